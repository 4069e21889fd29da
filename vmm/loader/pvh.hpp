#pragma once
// The PVH boot ABI's hvm_start_info, which nvhv also hands to its 64-bit ELF entry.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv {

inline constexpr uint32_t kHvmStartMagic = 0x336ec578;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56 && sizeof(HvmMemmapEntry) == 24 && sizeof(HvmModlistEntry) == 32);

struct InitrdPlacement {
  uint64_t paddr;
  uint64_t size;
};

// Writes the command line, memory map, module list and start info; returns its address.
uint64_t write_pvh_start_info(const GuestMemory& memory, const std::string& cmdline,
                              std::optional<InitrdPlacement> initrd, const std::vector<E820Entry>& extra_e820 = {});

}  // namespace nvhv
