#pragma once
// Loads an ELF64 x86-64 executable's PT_LOAD segments at their physical addresses.
// The file is untrusted input: every offset and size is checked before use.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv {

struct LoadedElf {
  uint64_t entry64;                     // e_entry: nvhv enters here in 64-bit mode
  std::optional<uint32_t> pvh_entry32;  // XEN_ELFNOTE_PHYS32_ENTRY, if the image has one
  uint64_t lowest;                      // lowest and one-past-highest loaded physical address
  uint64_t highest;
};

// Parses and loads an in-memory image; throws std::runtime_error naming what is wrong.
LoadedElf load_elf(std::span<const uint8_t> image, const GuestMemory& memory);
LoadedElf load_elf_file(const std::filesystem::path& path, const GuestMemory& memory);

bool looks_like_elf(std::span<const uint8_t> image);
std::vector<uint8_t> read_file(const std::filesystem::path& path, uint64_t max_bytes);

}  // namespace nvhv
