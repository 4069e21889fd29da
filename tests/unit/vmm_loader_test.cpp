// Memory layout, ELF loading, PVH start info and the MP table.
#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vmm/base/mapping.hpp"
#include "vmm/loader/elf_loader.hpp"
#include "vmm/loader/pvh.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/x86/layout.hpp"
#include "vmm/x86/mptable.hpp"

namespace nvhv {
namespace {

struct TestRam {
  explicit TestRam(uint64_t size) : map(Mapping::anonymous(size)), memory(map.bytes(), size) {}
  Mapping map;
  GuestMemory memory;
};

TEST(GuestMemory, SmallGuestIsOneLowRegion) {
  TestRam ram(64 << 20);
  ASSERT_EQ(ram.memory.regions().size(), 1u);
  EXPECT_EQ(ram.memory.regions()[0].guest_phys, 0u);
  EXPECT_NE(ram.memory.host_range(0, 64 << 20), nullptr);
  EXPECT_EQ(ram.memory.host_range(0, (64 << 20) + 1), nullptr);
  EXPECT_EQ(ram.memory.host_range(64 << 20, 1), nullptr);
  EXPECT_EQ(ram.memory.host_range(UINT64_MAX, 2), nullptr);
  EXPECT_EQ(ram.memory.host_range(10, UINT64_MAX), nullptr);
  EXPECT_THROW(ram.memory.checked_range(64 << 20, 1), std::out_of_range);
}

TEST(GuestMemory, LargeGuestSkipsThePciHole) {
  const uint64_t size = 4 * layout::kGiB;  // reserved only, never touched
  Mapping map = Mapping::anonymous(size);
  GuestMemory memory(map.bytes(), size);
  ASSERT_EQ(memory.regions().size(), 2u);
  EXPECT_EQ(memory.regions()[0].size, layout::kPciHoleStart);
  EXPECT_EQ(memory.regions()[1].guest_phys, layout::kFourGiB);
  EXPECT_EQ(memory.regions()[1].size, size - layout::kPciHoleStart);
  EXPECT_EQ(memory.regions()[1].host, map.bytes() + layout::kPciHoleStart);
  EXPECT_EQ(memory.host_range(layout::kPciHoleStart, 1), nullptr);
  EXPECT_EQ(memory.host_range(layout::kPciHoleStart - 1, 2), nullptr);  // straddles the hole
  EXPECT_EQ(memory.host_range(layout::kFourGiB, 8), map.bytes() + layout::kPciHoleStart);
  auto e820 = memory.e820();
  ASSERT_GE(e820.size(), 5u);
  EXPECT_EQ(e820.back().addr, layout::kFourGiB);
  EXPECT_EQ(e820.back().type, 1u);
  for (const auto& e : e820) EXPECT_FALSE(e.addr < layout::kFourGiB && e.addr + e.size > layout::kPciHoleStart);
}

// Builds a minimal ELF64 executable with one PT_LOAD and an optional PVH note.
std::vector<uint8_t> make_elf(uint64_t paddr, std::vector<uint8_t> payload, uint64_t memsz, bool pvh_note) {
  std::vector<uint8_t> out(sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr));
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = paddr;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = pvh_note ? 2 : 1;
  eh.e_ehsize = sizeof eh;
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_offset = out.size();
  load.p_paddr = load.p_vaddr = paddr;
  load.p_filesz = payload.size();
  load.p_memsz = memsz;
  // resize+memcpy rather than insert(): g++ 12 reports a false -Warray-bounds on the latter.
  out.resize(out.size() + payload.size());
  std::memcpy(out.data() + load.p_offset, payload.data(), payload.size());
  Elf64_Phdr note{};
  if (pvh_note) {
    note.p_type = PT_NOTE;
    note.p_offset = out.size();
    Elf64_Nhdr nh{4, 4, 18};
    auto put = [&](const void* p, size_t n) { out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
    put(&nh, sizeof nh);
    put("Xen", 4);
    uint32_t entry32 = 0x100123;
    put(&entry32, 4);
    note.p_filesz = out.size() - note.p_offset;
  }
  std::memcpy(out.data(), &eh, sizeof eh);
  std::memcpy(out.data() + sizeof eh, &load, sizeof load);
  if (pvh_note) std::memcpy(out.data() + sizeof eh + sizeof load, &note, sizeof note);
  return out;
}

TEST(ElfLoader, LoadsSegmentZeroesBssAndFindsPvhNote) {
  TestRam ram(16 << 20);
  std::memset(ram.memory.host_range(0x200000, 0x2000), 0xaa, 0x2000);
  auto elf = make_elf(0x200000, {1, 2, 3, 4}, 0x1000, true);
  LoadedElf loaded = load_elf(elf, ram.memory);
  EXPECT_EQ(loaded.entry64, 0x200000u);
  ASSERT_TRUE(loaded.pvh_entry32);
  EXPECT_EQ(*loaded.pvh_entry32, 0x100123u);
  const uint8_t* p = ram.memory.host_range(0x200000, 0x1000);
  EXPECT_EQ(p[0], 1);
  EXPECT_EQ(p[3], 4);
  EXPECT_EQ(p[4], 0);       // bss zeroed
  EXPECT_EQ(p[0xfff], 0);
  EXPECT_EQ(p[0x1000], 0xaa);  // nothing past memsz
  EXPECT_EQ(loaded.highest, 0x201000u);
}

TEST(ElfLoader, RejectsHostileImages) {
  TestRam ram(16 << 20);
  auto good = make_elf(0x200000, {1, 2, 3, 4}, 0x1000, true);
  auto expect_error = [&](std::vector<uint8_t> img, const char* needle) {
    try {
      load_elf(img, ram.memory);
      ADD_FAILURE() << "accepted image, expected: " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error({}, "past the end");
  expect_error(std::vector<uint8_t>(good.begin(), good.begin() + 20), "past the end");
  auto bad_magic = good;
  bad_magic[1] = 'X';
  expect_error(bad_magic, "no ELF magic");
  auto elf32 = good;
  elf32[EI_CLASS] = ELFCLASS32;
  expect_error(elf32, "not a 64-bit");
  auto too_high = make_elf(15 << 20, {1}, 2 << 20, false);
  expect_error(too_high, "does not fit in guest RAM");
  auto low = make_elf(0x1000, {1}, 0x10, false);
  expect_error(low, "overlaps the low boot area");
  auto truncated = good;
  truncated.resize(sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 2);  // segment data cut short
  expect_error(truncated, "past the end of the file");
  auto huge_filesz = good;
  auto* ph = reinterpret_cast<Elf64_Phdr*>(huge_filesz.data() + sizeof(Elf64_Ehdr));
  ph->p_filesz = UINT64_MAX;
  ph->p_memsz = UINT64_MAX;
  expect_error(huge_filesz, "past the end");
  auto wrapping = good;
  ph = reinterpret_cast<Elf64_Phdr*>(wrapping.data() + sizeof(Elf64_Ehdr));
  ph->p_paddr = UINT64_MAX - 1;
  expect_error(wrapping, "does not fit");
  auto bad_note = good;
  auto* nph = reinterpret_cast<Elf64_Phdr*>(bad_note.data() + sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr));
  auto* nh = reinterpret_cast<Elf64_Nhdr*>(bad_note.data() + nph->p_offset);
  nh->n_descsz = 0xfffffff0;
  expect_error(bad_note, "note runs past");
}

TEST(Pvh, StartInfoDescribesCmdlineAndMemory) {
  TestRam ram(32 << 20);
  uint64_t at = write_pvh_start_info(ram.memory, "tick_ms=10 ticks=3", InitrdPlacement{0x800000, 0x1234});
  HvmStartInfo info;
  std::memcpy(&info, ram.memory.host_range(at, sizeof info), sizeof info);
  EXPECT_EQ(info.magic, kHvmStartMagic);
  EXPECT_EQ(info.version, 1u);
  EXPECT_STREQ(reinterpret_cast<const char*>(ram.memory.host_range(info.cmdline_paddr, 1)), "tick_ms=10 ticks=3");
  ASSERT_EQ(info.nr_modules, 1u);
  HvmModlistEntry mod;
  std::memcpy(&mod, ram.memory.host_range(info.modlist_paddr, sizeof mod), sizeof mod);
  EXPECT_EQ(mod.paddr, 0x800000u);
  EXPECT_EQ(mod.size, 0x1234u);
  ASSERT_GE(info.memmap_entries, 3u);
  uint64_t ram_bytes = 0;
  for (uint32_t i = 0; i < info.memmap_entries; ++i) {
    HvmMemmapEntry e;
    std::memcpy(&e, ram.memory.host_range(info.memmap_paddr + i * sizeof e, sizeof e), sizeof e);
    if (e.type == 1) ram_bytes += e.size;
  }
  EXPECT_EQ(ram_bytes, (32u << 20) - (0x100000 - layout::kEbdaStart));
  EXPECT_THROW(write_pvh_start_info(ram.memory, std::string(8192, 'x'), std::nullopt), std::invalid_argument);

  // Persistent-memory regions are appended as E820 type 12.
  at = write_pvh_start_info(ram.memory, "", std::nullopt, {{8ull << 30, 64 << 20, 12}});
  std::memcpy(&info, ram.memory.host_range(at, sizeof info), sizeof info);
  HvmMemmapEntry last;
  std::memcpy(&last, ram.memory.host_range(info.memmap_paddr + (info.memmap_entries - 1) * sizeof last, sizeof last), sizeof last);
  EXPECT_EQ(last.addr, 8ull << 30);
  EXPECT_EQ(last.size, 64u << 20);
  EXPECT_EQ(last.type, 12u);
}

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

TEST(MpTable, ChecksumsAndProcessorEntries) {
  TestRam ram(16 << 20);
  for (uint32_t cpus : {1u, 2u, 7u}) {
    x86::write_mptable(ram.memory, cpus);
    const uint8_t* fp = ram.memory.host_range(layout::kMpTable, 16);
    ASSERT_EQ(std::memcmp(fp, "_MP_", 4), 0);
    EXPECT_EQ(sum(fp, 16), 0);
    uint32_t table_at;
    std::memcpy(&table_at, fp + 4, 4);
    const uint8_t* table = ram.memory.host_range(table_at, 44);
    ASSERT_EQ(std::memcmp(table, "PCMP", 4), 0);
    uint16_t length, count;
    std::memcpy(&length, table + 4, 2);
    std::memcpy(&count, table + 34, 2);
    EXPECT_EQ(sum(table, length), 0);
    const uint8_t* e = table + 44;
    uint32_t processors = 0, bsp = 0;
    for (uint16_t i = 0; i < count; ++i) {
      if (e[0] == 0) {
        EXPECT_EQ(e[1], processors);  // APIC IDs 0..n-1
        processors++;
        if (e[3] & 2) bsp++;
        e += 20;
      } else {
        e += 8;
      }
    }
    EXPECT_EQ(processors, cpus);
    EXPECT_EQ(bsp, 1u);
    EXPECT_EQ(static_cast<size_t>(e - table), length);
  }
  EXPECT_THROW(x86::write_mptable(ram.memory, 0), std::invalid_argument);
  EXPECT_THROW(x86::write_mptable(ram.memory, 1, {{1, 5, 16}}), std::invalid_argument);
}

TEST(MpTable, PciInterruptRoutes) {
  TestRam ram(16 << 20);
  x86::write_mptable(ram.memory, 2, {{3, 1, 17}});
  uint32_t table_at;
  std::memcpy(&table_at, ram.memory.host_range(layout::kMpTable + 4, 4), 4);
  const uint8_t* table = ram.memory.host_range(table_at, 44);
  uint16_t count;
  std::memcpy(&count, table + 34, 2);
  const uint8_t* e = table + 44;
  bool pci_bus = false, route = false;
  for (uint16_t i = 0; i < count; ++i) {
    if (e[0] == 1 && e[1] == 0 && std::memcmp(e + 2, "PCI", 3) == 0) pci_bus = true;
    if (e[0] == 3 && e[4] == 0 && e[5] == ((3 << 2) | 0) && e[7] == 17) {
      uint16_t flags;
      std::memcpy(&flags, e + 2, 2);
      route = flags == 0x000d;
    }
    e += e[0] == 0 ? 20 : 8;
  }
  EXPECT_TRUE(pci_bus);
  EXPECT_TRUE(route);
}

}  // namespace
}  // namespace nvhv
