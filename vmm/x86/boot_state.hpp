#pragma once
// The CPU and memory state a 64-bit kernel entry expects: identity page tables, a flat GDT,
// long-mode control registers.
#include "vmm/kvm/kvm_uapi.hpp"

#include <cstdint>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv::x86 {

// Writes the boot GDT and identity page tables (first 4 GiB, 2 MiB pages) into guest memory.
void write_boot_tables(const GuestMemory& memory);

// Segment and control registers for 64-bit mode on the boot tables above.
void set_long_mode_sregs(kvm_sregs& sregs);

// General registers at a 64-bit entry point: %rbx holds the PVH start info, %rsi the Linux zero page.
kvm_regs long_mode_entry_regs(uint64_t entry, uint64_t pvh_start_info, uint64_t zero_page);

}  // namespace nvhv::x86
