#pragma once
// Intel MultiProcessor Specification 1.4 table: tells guests (testos, Linux without ACPI) how
// many processors there are, their APIC IDs, the IOAPIC and how ISA interrupts are routed.
#include <cstdint>
#include <vector>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv::x86 {

// A PCI device's INTx pin wired to an IOAPIC input.
struct MpPciInterrupt {
  uint8_t slot;
  uint8_t pin;  // 1 = INTA#
  uint32_t gsi;
};

// Writes the floating pointer and configuration table at layout::kMpTable. Returns bytes used.
// Bus 0 is PCI, bus 1 ISA.
uint64_t write_mptable(const GuestMemory& memory, uint32_t vcpu_count, const std::vector<MpPciInterrupt>& pci_interrupts = {});

}  // namespace nvhv::x86
