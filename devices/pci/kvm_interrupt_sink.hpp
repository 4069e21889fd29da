#pragma once
// InterruptSink on a KVM VM with an in-kernel irqchip: MSI-X messages through KVM_SIGNAL_MSI,
// INTx through KVM_IRQ_LINE on the IOAPIC input. Header-only so nvhv_devices does not link
// the VMM library; the Machine includes it.
#include <atomic>

#include "devices/pci/interrupt_sink.hpp"
#include "vmm/base/log.hpp"
#include "vmm/kvm/kvm.hpp"

namespace nvhv::pci {

class KvmInterruptSink : public InterruptSink {
 public:
  explicit KvmInterruptSink(VmFd& vm) : vm_(vm) {}
  void signal_msi(uint64_t address, uint32_t data) override {
    // A message the guest programmed with no destination fails inside KVM; that is the
    // guest's problem, not a VMM error, so it is logged once and dropped.
    const int rc = vm_.signal_msi(address, data);
    if (rc < 0 && !warned_.exchange(true))
      log::warn("KVM_SIGNAL_MSI address {:#x} data {:#x} failed (errno {}); further failures are not logged", address, data, -rc);
  }
  void set_irq_line(uint32_t gsi, bool level) override { vm_.irq_line(gsi, level); }

 private:
  VmFd& vm_;
  std::atomic<bool> warned_{false};
};

}  // namespace nvhv::pci
