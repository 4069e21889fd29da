#pragma once
// Intel MultiProcessor Specification 1.4 table: tells guests (testos, Linux without ACPI) how
// many processors there are, their APIC IDs, the IOAPIC and how ISA interrupts are routed.
#include <cstdint>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv::x86 {

// Writes the floating pointer and configuration table at layout::kMpTable. Returns bytes used.
uint64_t write_mptable(const GuestMemory& memory, uint32_t vcpu_count);

}  // namespace nvhv::x86
