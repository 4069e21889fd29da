#pragma once
// Guest-physical memory layout of an nvhv x86-64 machine.
//
//   0x0000_0500  boot GDT (nvhv's 64-bit entry)
//   0x0000_6000  PVH hvm_start_info, then its memory map and module list
//   0x0000_7000  Linux boot_params (the zero page)
//   0x0001_0000  identity page tables (PML4, PDPT, 4 PDs: 4 GiB in 2 MiB pages)
//   0x0002_0000  kernel command line
//   0x0009_fc00  EBDA (reserved)
//   0x000f_0000  MP table (BIOS area, reserved)
//   0x0010_0000  RAM for the kernel and everything else
//   0xc000_0000  PCI hole up to 4 GiB: MMIO, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//   0x1_0000_0000 RAM above the hole
#include <cstdint>

namespace nvhv::layout {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

inline constexpr uint64_t kBootGdt = 0x500;
inline constexpr uint64_t kStartInfo = 0x6000;
inline constexpr uint64_t kStartInfoMemmap = 0x6040;
inline constexpr uint32_t kStartInfoMaxMemmap = 64;
inline constexpr uint64_t kStartInfoModlist = 0x6a00;
inline constexpr uint64_t kZeroPage = 0x7000;
inline constexpr uint64_t kPml4 = 0x10000;
inline constexpr uint64_t kPdpt = 0x11000;
inline constexpr uint64_t kPd = 0x12000;  // four pages
inline constexpr uint64_t kCmdline = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x1000;
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kBiosStart = 0xf0000;
inline constexpr uint64_t kMpTable = 0xf0000;
inline constexpr uint64_t kHighMemory = 0x100000;

inline constexpr uint64_t kPciHoleStart = 3 * kGiB;
inline constexpr uint64_t kFourGiB = 4 * kGiB;
inline constexpr uint64_t kIoapicBase = 0xfec00000;
inline constexpr uint64_t kLapicBase = 0xfee00000;
// KVM needs three pages for the real-mode TSS and one for the EPT identity map, in the hole.
inline constexpr uint64_t kKvmTss = 0xfffbd000;
inline constexpr uint64_t kKvmIdentityMap = 0xfffbc000;

// Boot GDT selectors for the 64-bit entry: Linux's 64-bit boot protocol asks for __BOOT_CS
// (0x10) and __BOOT_DS (0x18); testos does not care.
inline constexpr uint16_t kCodeSelector = 0x10;
inline constexpr uint16_t kDataSelector = 0x18;
inline constexpr uint16_t kTssSelector = 0x20;

}  // namespace nvhv::layout
