#include "vmm/loader/linux_loader.hpp"

#include <fmt/core.h>

#include <cstring>
#include <stdexcept>

#include "vmm/x86/layout.hpp"

namespace nvhv {
namespace {

// Offsets in the bzImage / boot_params (Documentation/x86/boot.rst, zero-page.rst).
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kHeaderStart = 0x1f1;
constexpr size_t kJumpEnd = 0x201;  // the byte here is the header length past 0x202
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kMagic = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kTypeOfLoader = 0x210;
constexpr size_t kLoadFlags = 0x211;
constexpr size_t kRamdiskImage = 0x218;
constexpr size_t kRamdiskSize = 0x21c;
constexpr size_t kHeapEndPtr = 0x224;
constexpr size_t kCmdLinePtr = 0x228;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kXLoadFlags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kInitSize = 0x260;
constexpr size_t kExtRamdiskImage = 0x0c0;
constexpr size_t kExtRamdiskSize = 0x0c4;
constexpr size_t kExtCmdLinePtr = 0x0c8;
constexpr size_t kE820Entries = 0x1e8;
constexpr size_t kE820Table = 0x2d0;
constexpr size_t kE820Max = 128;
constexpr size_t kHeaderMinSize = 0x264;

constexpr uint64_t kLoadAddress = 0x100000;
constexpr uint8_t kLoadedHigh = 0x01, kCanUseHeap = 0x80;
constexpr uint16_t kXlfKernel64 = 0x01;

[[noreturn]] void bad(const std::string& what) { throw std::runtime_error("bzImage: " + what); }

template <typename T>
T get(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}
template <typename T>
void put(uint8_t* page, size_t off, T v) {
  std::memcpy(page + off, &v, sizeof v);
}

}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> image) {
  return image.size() >= kHeaderMinSize && std::memcmp(image.data() + kMagic, "HdrS", 4) == 0;
}

void write_zero_page(const GuestMemory& memory, std::span<const uint8_t> setup_header,
                     std::optional<InitrdPlacement> initrd, const std::vector<E820Entry>& extra_e820) {
  uint8_t* zp = memory.checked_range(layout::kZeroPage, 0x1000);
  std::memset(zp, 0, 0x1000);
  if (setup_header.empty()) {
    // A kernel without a setup header (an ELF vmlinux): the fields its 64-bit entry reads.
    put<uint16_t>(zp, kBootFlag, 0xaa55);
    std::memcpy(zp + kMagic, "HdrS", 4);
    put<uint16_t>(zp, kVersion, 0x020f);
    zp[kLoadFlags] = kLoadedHigh;
    put<uint32_t>(zp, kKernelAlignment, 0x200000);
    put<uint32_t>(zp, kCmdlineSize, static_cast<uint32_t>(layout::kCmdlineMax - 1));
  } else {
    if (setup_header.size() > 0x1000 - kHeaderStart) bad("setup header is too large");
    std::memcpy(zp + kHeaderStart, setup_header.data(), setup_header.size());
  }
  zp[kTypeOfLoader] = 0xff;  // "undefined" boot loader
  zp[kLoadFlags] = static_cast<uint8_t>(zp[kLoadFlags] | kCanUseHeap);
  put<uint16_t>(zp, kHeapEndPtr, 0xfe00);
  put<uint32_t>(zp, kCmdLinePtr, static_cast<uint32_t>(layout::kCmdline));
  put<uint32_t>(zp, kExtCmdLinePtr, 0);
  if (initrd) {
    put<uint32_t>(zp, kRamdiskImage, static_cast<uint32_t>(initrd->paddr));
    put<uint32_t>(zp, kRamdiskSize, static_cast<uint32_t>(initrd->size));
    put<uint32_t>(zp, kExtRamdiskImage, static_cast<uint32_t>(initrd->paddr >> 32));
    put<uint32_t>(zp, kExtRamdiskSize, static_cast<uint32_t>(initrd->size >> 32));
  }
  auto e820 = memory.e820();
  e820.insert(e820.end(), extra_e820.begin(), extra_e820.end());
  if (e820.size() > kE820Max) bad("too many memory map entries");
  zp[kE820Entries] = static_cast<uint8_t>(e820.size());
  for (size_t i = 0; i < e820.size(); ++i) {
    uint8_t* e = zp + kE820Table + i * 20;
    put<uint64_t>(e, 0, e820[i].addr);
    put<uint64_t>(e, 8, e820[i].size);
    put<uint32_t>(e, 16, e820[i].type);
  }
}

std::optional<InitrdPlacement> place_initrd(const GuestMemory& memory, std::span<const uint8_t> initrd, uint64_t low_end,
                                            uint64_t kernel_end) {
  if (initrd.empty()) return std::nullopt;
  if (initrd.size() > low_end || ((low_end - initrd.size()) & ~0xfffull) < kernel_end)
    throw std::runtime_error(fmt::format("no room for a {} MiB initrd below {:#x} above the kernel (which ends at {:#x})",
                                         initrd.size() >> 20, low_end, kernel_end));
  const uint64_t at = (low_end - initrd.size()) & ~0xfffull;
  memory.write(at, initrd);
  return InitrdPlacement{at, initrd.size()};
}

LinuxBoot load_linux(std::span<const uint8_t> bzimage, std::span<const uint8_t> initrd, const std::string& cmdline,
                     const GuestMemory& memory, const std::vector<E820Entry>& extra_e820) {
  if (!looks_like_bzimage(bzimage)) bad("no \"HdrS\" setup header");
  const uint16_t version = get<uint16_t>(bzimage, kVersion);
  if (version < 0x020c) bad(fmt::format("boot protocol {}.{:02} is too old (2.12 or later has the 64-bit entry)", version >> 8, version & 0xff));
  if (!(get<uint16_t>(bzimage, kXLoadFlags) & kXlfKernel64)) bad("the kernel has no 64-bit entry point (XLF_KERNEL_64)");
  if (!(bzimage[kLoadFlags] & kLoadedHigh)) bad("not a bzImage (LOADED_HIGH is clear)");

  const size_t setup_sects = bzimage[kSetupSects] ? bzimage[kSetupSects] : 4;
  const size_t kernel_offset = (setup_sects + 1) * 512;
  if (kernel_offset >= bzimage.size()) bad("setup sectors run past the end of the file");
  const size_t header_end = kJumpEnd + 1 + bzimage[kJumpEnd];
  if (header_end > bzimage.size() || header_end > 0x1000) bad("setup header runs past the end of the file");
  const uint64_t kernel_size = bzimage.size() - kernel_offset;
  const uint64_t init_size = get<uint32_t>(bzimage, kInitSize);
  const uint64_t footprint = std::max<uint64_t>(init_size, kernel_size);
  uint8_t* kernel_dst = memory.host_range(kLoadAddress, footprint);
  if (!kernel_dst)
    bad(fmt::format("the kernel needs {} MiB from 1 MiB up (init_size), more than guest RAM has", (footprint + (1 << 20) - 1) >> 20));
  std::memcpy(kernel_dst, bzimage.data() + kernel_offset, kernel_size);

  const uint32_t cmdline_max = get<uint32_t>(bzimage, kCmdlineSize);
  if (cmdline.size() > cmdline_max) bad(fmt::format("the command line is {} bytes, the kernel accepts {}", cmdline.size(), cmdline_max));
  if (cmdline.size() >= layout::kCmdlineMax) bad("the command line is too long");
  memory.write(layout::kCmdline, std::span(reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1));

  LinuxBoot boot{kLoadAddress + 0x200, layout::kZeroPage, kLoadAddress + footprint, std::nullopt};
  // Below the highest address the kernel accepts, clear of the area the decompressor uses.
  const uint64_t addr_max = get<uint32_t>(bzimage, kInitrdAddrMax);
  const uint64_t low_end = std::min<uint64_t>(memory.regions()[0].size, addr_max + 1);
  std::optional<InitrdPlacement> placed = place_initrd(memory, initrd, low_end, boot.kernel_end);
  if (placed) boot.initrd_at = placed->paddr;
  write_zero_page(memory, bzimage.subspan(kHeaderStart, header_end - kHeaderStart), placed, extra_e820);
  return boot;
}

}  // namespace nvhv
