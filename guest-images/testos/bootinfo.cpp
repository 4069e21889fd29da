// testos: what the loader and the firmware tell us. The PVH start info gives the command line and
// the E820 map; the Intel MP table (MultiProcessor Specification 1.4) gives the processors.
#include "testos.hpp"

namespace testos {
namespace {

constexpr u32 kStartInfoMagic = 0x336ec578;
constexpr u32 kE820Ram = 1;
constexpr u64 kMapped = 1ull << 32;  // tables.S maps the first 4 GiB only

struct StartInfo {
  u32 magic;
  u32 version;
  u32 flags;
  u32 nr_modules;
  u64 modlist_paddr;
  u64 cmdline_paddr;
  u64 rsdp_paddr;
  u64 memmap_paddr;  // version >= 1
  u32 memmap_entries;
  u32 reserved;
};
struct MemmapEntry {
  u64 addr;
  u64 size;
  u32 type;
  u32 reserved;
};

const MemmapEntry* memmap;
u32 memmap_entries;

// "key=<decimal>" tokens; unknown keys are ignored so loaders may add their own.
bool parse_u64(const char*& s, u64& out) {
  if (*s < '0' || *s > '9') return false;
  u64 v = 0;
  while (*s >= '0' && *s <= '9') {
    if (v > (~0ull - 9) / 10) return false;
    v = v * 10 + static_cast<u64>(*s++ - '0');
  }
  out = v;
  return *s == 0 || *s == ' ';
}

bool starts_with(const char* s, const char* prefix, const char*& rest) {
  while (*prefix)
    if (*s++ != *prefix++) return false;
  rest = s;
  return true;
}

void parse_cmdline(const char* s, Config& cfg) {
  static constexpr struct {
    const char* key;
    u64 Config::*field;
    u64 min;
  } kKeys[] = {{"tick_ms=", &Config::tick_ms, 1},
               {"mem_mib=", &Config::mem_mib, 1},
               {"ticks=", &Config::ticks, 0},
               {"reset_after=", &Config::reset_after, 0},
               {"triple_fault_after=", &Config::triple_fault_after, 0},
               {"corrupt_tick=", &Config::corrupt_tick, 0}};
  while (*s) {
    while (*s == ' ') ++s;
    for (const auto& k : kKeys) {
      const char* value;
      if (!starts_with(s, k.key, value)) continue;
      u64 v;
      if (!parse_u64(value, v) || v < k.min) {
        Line l;
        l.str("testos: error bad command line value for ").str(k.key);
        fatal(l);
      }
      cfg.*k.field = v;
    }
    while (*s && *s != ' ') ++s;
  }
}

u8 checksum(u64 pa, u64 len) {
  u8 sum = 0;
  for (u64 i = 0; i < len; ++i) sum = static_cast<u8>(sum + peek<u8>(pa + i));
  return sum;
}

// The MP floating pointer: "_MP_", 16-byte aligned, length in 16-byte units, zero checksum.
u64 scan_mp_floating(u64 begin, u64 len) {
  for (u64 pa = begin; pa + 16 <= begin + len; pa += 16) {
    if (peek<u32>(pa) != 0x5f504d5f) continue;  // "_MP_"
    u8 units = peek<u8>(pa + 8);
    if (units >= 1 && checksum(pa, units * 16u) == 0) return pa;
  }
  return 0;
}

u64 find_mp_floating() {
  // Where the spec puts it: the first KiB of the EBDA, the last KiB of base memory, the BIOS ROM.
  u64 ebda = static_cast<u64>(peek<u16>(0x40e)) << 4;
  if (ebda >= 0x400 && ebda < 0xa0000)
    if (u64 pa = scan_mp_floating(ebda, 1024)) return pa;
  u64 base_kib = peek<u16>(0x413);
  if (base_kib >= 1 && base_kib <= 640)
    if (u64 pa = scan_mp_floating(base_kib * 1024 - 1024, 1024)) return pa;
  return scan_mp_floating(0xf0000, 0x10000);
}

void add_cpu(CpuSet& set, u64 apic_id) {
  if (apic_id >= MAX_CPUS || set.count >= MAX_CPUS) {
    Line l;
    l.str("testos: error processor with apic id ").dec(apic_id).str(" exceeds the ").dec(MAX_CPUS).str(" supported slots");
    fatal(l);
  }
  unsigned i = set.count++;
  for (; i > 0 && set.apic_ids[i - 1] > apic_id; --i) set.apic_ids[i] = set.apic_ids[i - 1];
  set.apic_ids[i] = static_cast<u8>(apic_id);
}

void read_mp_config(u64 table, CpuSet& set) {
  if (peek<u32>(table) != 0x504d4350) fatal("MP configuration table signature is not PCMP");
  u16 length = peek<u16>(table + 4);
  if (length < 44 || checksum(table, length) != 0) fatal("MP configuration table checksum");
  set.lapic = peek<u32>(table + 36);
  u16 entries = peek<u16>(table + 34);
  u64 p = table + 44;
  for (u16 i = 0; i < entries && p < table + length; ++i) {
    u8 type = peek<u8>(p);
    if (type == 0) {  // processor: [1] LAPIC id, [3] flags (bit 0 enabled)
      if (peek<u8>(p + 3) & 1) add_cpu(set, peek<u8>(p + 1));
      p += 20;
    } else if (type <= 4) {
      p += 8;
    } else {
      break;  // unknown entry: its length is unknown too
    }
  }
}

}  // namespace

Config read_start_info(u64 pa) {
  if (pa >= kMapped || peek<u32>(pa) != kStartInfoMagic) fatal("bad PVH start info magic");
  StartInfo si;
  for (size_t i = 0; i < sizeof si; ++i) reinterpret_cast<u8*>(&si)[i] = peek<u8>(pa + i);
  Config cfg;
  if (si.cmdline_paddr && si.cmdline_paddr < kMapped)
    parse_cmdline(reinterpret_cast<const char*>(si.cmdline_paddr), cfg);
  if (si.version < 1 || si.memmap_entries == 0 || si.memmap_paddr >= kMapped)
    fatal("start info has no memory map");
  memmap = reinterpret_cast<const MemmapEntry*>(si.memmap_paddr);
  memmap_entries = si.memmap_entries;
  return cfg;
}

bool ram_covers(u64 begin, u64 end) {
  // Adjacent RAM entries may together cover the range.
  for (bool progress = true; begin < end && progress;) {
    progress = false;
    for (u32 i = 0; i < memmap_entries; ++i) {
      const MemmapEntry& e = memmap[i];
      if (e.type == kE820Ram && e.addr <= begin && begin < e.addr + e.size) {
        begin = e.addr + e.size;
        progress = true;
      }
    }
  }
  return begin >= end;
}

CpuSet find_cpus(unsigned bsp_slot) {
  CpuSet set;
  if (u64 fp = find_mp_floating()) {
    set.from_mp_table = true;
    u64 table = peek<u32>(fp + 4);
    if (peek<u8>(fp + 11) != 0 || table == 0) {
      add_cpu(set, 0);  // a "default configuration": two processors, APIC IDs 0 and 1
      add_cpu(set, 1);
    } else {
      read_mp_config(table, set);
    }
  }
  if (set.count == 0) add_cpu(set, bsp_slot);
  bool bsp_listed = false;
  for (unsigned i = 0; i < set.count; ++i) bsp_listed |= set.apic_ids[i] == bsp_slot;
  if (!bsp_listed) fatal("the MP table does not list the bootstrap processor");
  return set;
}

}  // namespace testos
