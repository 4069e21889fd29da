#include "vmm/x86/boot_state.hpp"

#include "vmm/x86/layout.hpp"

namespace nvhv::x86 {
namespace {

constexpr uint64_t kPresent = 1, kWritable = 2, kHuge = 0x80;

// Encodes a GDT descriptor from flags (G, D/B, L, AVL in bits 12-15; type/S/DPL/P in 0-7).
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((static_cast<uint64_t>(base) & 0xff000000ull) << 32) | ((static_cast<uint64_t>(base) & 0x00ffffffull) << 16) |
         (static_cast<uint64_t>(limit) & 0x0000ffffull) | ((static_cast<uint64_t>(limit) & 0x000f0000ull) << 32) |
         ((static_cast<uint64_t>(flags) & 0x0000f0ffull) << 40);
}

constexpr uint64_t kGdt[] = {
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff),  // 0x10: 64-bit code, present, DPL0
    gdt_entry(0xc093, 0, 0xfffff),  // 0x18: data, present, DPL0
    gdt_entry(0x808b, 0, 0xfffff),  // 0x20: busy 64-bit TSS
};

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  kvm_segment s{};
  s.base = static_cast<uint32_t>(((entry >> 16) & 0xffffff) | ((entry >> 32) & 0xff000000));
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | ((entry >> 32) & 0xf0000));
  s.g = (entry >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (entry >> 40) & 0xf;
  s.present = (entry >> 47) & 1;
  s.dpl = (entry >> 45) & 3;
  s.db = (entry >> 54) & 1;
  s.s = (entry >> 44) & 1;
  s.l = (entry >> 53) & 1;
  s.avl = (entry >> 52) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

}  // namespace

void write_boot_tables(const GuestMemory& memory) {
  memory.write_object(layout::kBootGdt, kGdt);
  memory.write_object<uint64_t>(layout::kPml4, layout::kPdpt | kPresent | kWritable);
  for (uint64_t i = 0; i < 4; ++i) {
    uint64_t pd = layout::kPd + i * 0x1000;
    memory.write_object<uint64_t>(layout::kPdpt + i * 8, pd | kPresent | kWritable);
    uint64_t* entries = reinterpret_cast<uint64_t*>(memory.checked_range(pd, 0x1000));
    for (uint64_t j = 0; j < 512; ++j) entries[j] = ((i << 30) | (j << 21)) | kPresent | kWritable | kHuge;
  }
}

void set_long_mode_sregs(kvm_sregs& sregs) {
  kvm_segment code = segment_from_gdt(kGdt[layout::kCodeSelector / 8], layout::kCodeSelector);
  kvm_segment data = segment_from_gdt(kGdt[layout::kDataSelector / 8], layout::kDataSelector);
  kvm_segment tss = segment_from_gdt(kGdt[layout::kTssSelector / 8], layout::kTssSelector);
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = tss;
  sregs.gdt.base = layout::kBootGdt;
  sregs.gdt.limit = sizeof(kGdt) - 1;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cr3 = layout::kPml4;
  sregs.cr4 = 0x20;                 // PAE
  sregs.cr0 = 0x80050033;           // PG | AM | WP | NE | ET | MP | PE
  sregs.efer = 0x500;               // LMA | LME
}

kvm_regs long_mode_entry_regs(uint64_t entry, uint64_t pvh_start_info, uint64_t zero_page) {
  kvm_regs regs{};
  regs.rip = entry;
  regs.rflags = 0x2;
  regs.rbx = pvh_start_info;
  regs.rsi = zero_page;
  return regs;
}

}  // namespace nvhv::x86
