#pragma once
// Where device interrupts go. The Machine implements it with KVM (KVM_SIGNAL_MSI and
// KVM_IRQ_LINE, see kvm_interrupt_sink.hpp); tests implement it to record what was sent.
#include <cstdint>

namespace nvhv::pci {

class InterruptSink {
 public:
  virtual ~InterruptSink() = default;
  // One message-signalled interrupt, as programmed in an MSI-X table entry by the guest. Must
  // not throw for a message that reaches no vCPU: the guest chose it.
  virtual void signal_msi(uint64_t address, uint32_t data) = 0;
  // The level of an interrupt controller input (GSI); level-triggered and shared-line safe
  // only through PciBus, which ORs the functions wired to the same line.
  virtual void set_irq_line(uint32_t gsi, bool level) = 0;
};

}  // namespace nvhv::pci
