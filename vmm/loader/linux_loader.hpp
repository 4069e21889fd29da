#pragma once
// Linux x86 boot protocol (Documentation/x86/boot.rst), 64-bit entry: the bzImage's protected-
// mode kernel at 1 MiB, a zero page (struct boot_params) with the setup header, command line,
// initrd and E820 map, and entry at the kernel's startup_64 (load address + 0x200) with %rsi
// pointing at the zero page. The image is untrusted: every header field is checked before use.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/loader/pvh.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace nvhv {

struct LinuxBoot {
  uint64_t entry64;
  uint64_t zero_page;
  uint64_t kernel_end;  // load address + init_size: where the decompressor may write up to
  std::optional<uint64_t> initrd_at;
};

// Writes the zero page (struct boot_params) at layout::kZeroPage: `setup_header` is the bzImage's
// (from offset 0x1f1), or empty for a kernel without one (an ELF vmlinux entered at startup_64),
// which gets the few header fields that entry reads. The command line must already be at
// layout::kCmdline.
void write_zero_page(const GuestMemory& memory, std::span<const uint8_t> setup_header,
                     std::optional<InitrdPlacement> initrd, const std::vector<E820Entry>& extra_e820);

// Copies an initrd to the highest page-aligned place below `low_end` that stays clear of
// everything below `kernel_end` (what both boot ABIs ask of a loader); nullopt for none.
std::optional<InitrdPlacement> place_initrd(const GuestMemory& memory, std::span<const uint8_t> initrd, uint64_t low_end,
                                            uint64_t kernel_end);

bool looks_like_bzimage(std::span<const uint8_t> image);

// `extra_e820` entries (e.g. persistent-memory regions, type 12) are added to the guest's map.
LinuxBoot load_linux(std::span<const uint8_t> bzimage, std::span<const uint8_t> initrd, const std::string& cmdline,
                     const GuestMemory& memory, const std::vector<E820Entry>& extra_e820 = {});

}  // namespace nvhv
