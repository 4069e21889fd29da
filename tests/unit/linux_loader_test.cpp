// The Linux boot protocol loader, on synthetic images and on Debian's own kernel when installed.
#include "vmm/loader/linux_loader.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "vmm/base/mapping.hpp"
#include "vmm/loader/elf_loader.hpp"
#include "vmm/x86/layout.hpp"

namespace nvhv {
namespace {

struct Ram {
  explicit Ram(uint64_t size) : map(Mapping::anonymous(size)), memory(map.bytes(), size) {}
  Mapping map;
  GuestMemory memory;
};

template <typename T>
T at(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

// A minimal bzImage: setup header fields the loader reads, then a protected-mode "kernel".
std::vector<uint8_t> fake_bzimage(uint16_t version = 0x020f, uint16_t xloadflags = 1, uint32_t init_size = 8 << 20) {
  std::vector<uint8_t> img(5 * 512 + 4096, 0);
  img[0x1f1] = 4;  // setup_sects
  img[0x201] = 0x64;
  std::memcpy(&img[0x202], "HdrS", 4);
  std::memcpy(&img[0x206], &version, 2);
  img[0x211] = 0x01;  // LOADED_HIGH
  uint32_t initrd_max = 0x7fffffff, cmdline_size = 2048;
  std::memcpy(&img[0x22c], &initrd_max, 4);
  std::memcpy(&img[0x236], &xloadflags, 2);
  std::memcpy(&img[0x238], &cmdline_size, 4);
  std::memcpy(&img[0x260], &init_size, 4);
  for (size_t i = 5 * 512; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 7);
  return img;
}

TEST(LinuxLoader, FillsTheZeroPage) {
  Ram ram(128 << 20);
  auto img = fake_bzimage();
  std::vector<uint8_t> initrd(3 << 20, 0xab);
  std::vector<E820Entry> pmem{{8ull << 30, 1 << 30, 12}};
  LinuxBoot boot = load_linux(img, initrd, "console=ttyS0 quiet", ram.memory, pmem);
  EXPECT_EQ(boot.entry64, 0x100200u);
  EXPECT_EQ(boot.zero_page, layout::kZeroPage);
  const uint8_t* zp = ram.memory.host_range(layout::kZeroPage, 4096);
  EXPECT_EQ(std::memcmp(zp + 0x202, "HdrS", 4), 0);
  EXPECT_EQ(zp[0x210], 0xff);
  EXPECT_EQ(zp[0x211] & 0x81, 0x81);
  EXPECT_STREQ(reinterpret_cast<const char*>(ram.memory.host_range(at<uint32_t>(zp, 0x228), 1)), "console=ttyS0 quiet");
  ASSERT_TRUE(boot.initrd_at);
  EXPECT_EQ(at<uint32_t>(zp, 0x218), *boot.initrd_at);
  EXPECT_EQ(at<uint32_t>(zp, 0x21c), initrd.size());
  EXPECT_EQ(*boot.initrd_at % 4096, 0u);
  EXPECT_GE(*boot.initrd_at, boot.kernel_end);
  EXPECT_LE(*boot.initrd_at + initrd.size(), 128u << 20);
  EXPECT_EQ(ram.memory.host_range(*boot.initrd_at, 1)[0], 0xab);
  // The protected-mode kernel sits at 1 MiB.
  EXPECT_EQ(std::memcmp(ram.memory.host_range(0x100000, 4096), img.data() + 5 * 512, 4096), 0);
  const uint8_t entries = zp[0x1e8];
  ASSERT_EQ(entries, ram.memory.e820().size() + 1);
  const uint8_t* last = zp + 0x2d0 + (entries - 1) * 20;
  EXPECT_EQ(at<uint64_t>(last, 0), 8ull << 30);
  EXPECT_EQ(at<uint32_t>(last, 16), 12u);
}

TEST(LinuxLoader, RefusesWhatItCannotBoot) {
  Ram ram(32 << 20);
  auto expect = [&](std::vector<uint8_t> img, const std::string& cmdline, const char* needle, std::vector<uint8_t> initrd = {}) {
    try {
      load_linux(img, initrd, cmdline, ram.memory);
      ADD_FAILURE() << "accepted; expected " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect({}, "", "no \"HdrS\"");
  expect(fake_bzimage(0x0206), "", "too old");
  expect(fake_bzimage(0x020f, 0), "", "no 64-bit entry");
  expect(fake_bzimage(0x020f, 1, 64 << 20), "", "more than guest RAM");
  expect(fake_bzimage(), std::string(3000, 'x'), "the kernel accepts 2048");
  expect(fake_bzimage(), "", "no room", std::vector<uint8_t>(31 << 20, 1));
  auto truncated = fake_bzimage();
  truncated.resize(0x300);
  expect(truncated, "", "past the end");
  auto long_header = fake_bzimage();
  long_header.resize(0x264 + 10);
  long_header[0x1f1] = 0;
  expect(long_header, "", "past the end");
}

// An ELF vmlinux has no setup header: the zero page gets the fields startup_64 reads, so Linux
// finds its command line, initrd and memory map (it printed an empty command line without them).
TEST(LinuxLoader, ZeroPageForAKernelWithoutSetupHeader) {
  Ram ram(64 << 20);
  const std::string cmdline = "console=ttyS0";
  ram.memory.write(layout::kCmdline, std::span(reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1));
  write_zero_page(ram.memory, {}, InitrdPlacement{0x3000000, 0x1234}, {E820Entry{8ull << 30, 1ull << 30, 12}});
  const uint8_t* zp = ram.memory.host_range(layout::kZeroPage, 4096);
  EXPECT_EQ(at<uint16_t>(zp, 0x1fe), 0xaa55);
  EXPECT_EQ(std::memcmp(zp + 0x202, "HdrS", 4), 0);
  EXPECT_GE(at<uint16_t>(zp, 0x206), 0x020c);
  EXPECT_EQ(zp[0x210], 0xff);
  EXPECT_EQ(at<uint32_t>(zp, 0x228), layout::kCmdline);
  EXPECT_EQ(at<uint32_t>(zp, 0x218), 0x3000000u);
  EXPECT_EQ(at<uint32_t>(zp, 0x21c), 0x1234u);
  ASSERT_EQ(zp[0x1e8], ram.memory.e820().size() + 1);
  const uint8_t* last = zp + 0x2d0 + (zp[0x1e8] - 1) * 20;
  EXPECT_EQ(at<uint32_t>(last, 16), 12u);
}

TEST(LinuxLoader, PlacesTheInitrdHighAndPageAlignedClearOfTheKernel) {
  Ram ram(64 << 20);
  std::vector<uint8_t> initrd(0x12345, 0x5a);
  const auto placed = place_initrd(ram.memory, initrd, 48 << 20, 16 << 20);
  ASSERT_TRUE(placed);
  EXPECT_EQ(placed->paddr, ((48u << 20) - initrd.size()) & ~0xfffull);
  EXPECT_EQ(placed->size, initrd.size());
  EXPECT_EQ(std::memcmp(ram.memory.host_range(placed->paddr, initrd.size()), initrd.data(), initrd.size()), 0);
  EXPECT_FALSE(place_initrd(ram.memory, {}, 48 << 20, 16 << 20));
  // One byte too many for the room above the kernel once aligned down: refused, nothing written.
  std::vector<uint8_t> big((32 << 20) + 1, 0x77);
  EXPECT_THROW(place_initrd(ram.memory, big, 48 << 20, 16 << 20), std::runtime_error);
  EXPECT_EQ(*ram.memory.host_range(16 << 20, 1), 0);
}

TEST(LinuxLoader, LoadsDebiansKernel) {
  std::filesystem::path kernel;
  if (std::filesystem::exists("/boot"))
    for (const auto& e : std::filesystem::directory_iterator("/boot"))
      if (e.path().filename().string().rfind("vmlinuz-", 0) == 0) kernel = e.path();
  if (kernel.empty()) GTEST_SKIP() << "no /boot/vmlinuz-* (linux-image-amd64 is installed by tools/setup-deps test)";
  Ram ram(256 << 20);
  auto img = read_file(kernel, 64 << 20);
  ASSERT_TRUE(looks_like_bzimage(img));
  LinuxBoot boot = load_linux(img, std::vector<uint8_t>(1 << 20, 0x5a), "console=ttyS0", ram.memory);
  EXPECT_EQ(boot.entry64, 0x100200u);
  const uint8_t* zp = ram.memory.host_range(layout::kZeroPage, 4096);
  EXPECT_GE(at<uint16_t>(zp, 0x206), 0x020c);
  EXPECT_GT(boot.kernel_end, 0x100000u + img.size() / 2);
}

}  // namespace
}  // namespace nvhv
