// Holes in a file backing are known zero: a swap-out asks the file system where the data is
// (SEEK_DATA/SEEK_HOLE) and never reads the rest, so a mostly-unused guest neither faults in nor,
// on tmpfs, allocates a page per hole, and it comes back exactly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "persistence/image.hpp"
#include "persistence/swap.hpp"
#include "persistence/swap_holes.hpp"
#include "persistence/swap_image.hpp"
#include "persistence/swap_sparse.hpp"
#include "tests/unit/persistence_test_util.hpp"
#include "tests/unit/swap_test_util.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::persistence {
namespace {

using nlohmann::json;
using swapsparse::PageRun;
using test::small_chunks;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRam = 8ull << 20;
constexpr uint32_t kVcpus = 2;

json identity() { return {{"vcpus", kVcpus}, {"memory_mib", 8}, {"machine", "holes-test"}}; }

std::string text(const std::vector<PageRun>& runs) {
  std::string s;
  for (const PageRun& r : runs) s += "{" + std::to_string(r.first) + "," + std::to_string(r.count) + "}";
  return s.empty() ? "(none)" : s;
}

// A directory on tmpfs (where reading a hole through a mapping allocates a page), removed after.
class ShmDir {
 public:
  ShmDir() : path_("/dev/shm/nvhv-holes-" + std::to_string(::getpid())) { std::filesystem::create_directories(path_); }
  ~ShmDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A 128-page file with data in pages 3-4 (written whole) and 70 (a few bytes): on tmpfs and on
// the test directory's file system, the runs name exactly those pages, clipped to the range asked.
TEST(SwapHolesTest, DataRunsNameThePagesThatHoldData) {
  ShmDir shm;
  test::TempDir dir;
  for (const std::string& path : {shm.file("sparse"), dir.file("sparse")}) {
    SCOPED_TRACE(path);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), 128 * kPage), 0);
    const std::vector<uint8_t> two_pages(2 * kPage, 0x5a);
    ASSERT_EQ(::pwrite(fd.get(), two_pages.data(), two_pages.size(), 3 * kPage), ssize_t(2 * kPage));
    ASSERT_EQ(::pwrite(fd.get(), "data", 4, 70 * kPage + 50), 4);
    ASSERT_TRUE(swapholes::has_holes(fd.get()));

    std::vector<PageRun> runs = swapholes::data_runs(fd.get(), 0, 128 * kPage);
    EXPECT_EQ(runs, (std::vector<PageRun>{{3, 2}, {70, 1}})) << text(runs);
    runs = swapholes::data_runs(fd.get(), 64 * kPage, 64 * kPage);
    EXPECT_EQ(runs, (std::vector<PageRun>{{6, 1}})) << text(runs);
    runs = swapholes::data_runs(fd.get(), 4 * kPage, 2 * kPage);
    EXPECT_EQ(runs, (std::vector<PageRun>{{0, 1}})) << text(runs);
    runs = swapholes::data_runs(fd.get(), 8 * kPage, 56 * kPage);
    EXPECT_TRUE(runs.empty()) << text(runs);
    runs = swapholes::data_runs(fd.get(), 100 * kPage, 28 * kPage);
    EXPECT_TRUE(runs.empty()) << text(runs);  // past the last data

    // Parts of the map, as the swap-out asks per chunk: clipped to the part asked.
    swapholes::DataFinder finder(fd.get(), 0, 128 * kPage);
    finder.wait();
    runs = {{9, 9}};  // replaced, not appended to
    finder.runs_in(0, 4, runs);
    EXPECT_EQ(runs, (std::vector<PageRun>{{3, 1}})) << text(runs);
    finder.runs_in(4, 80, runs);
    EXPECT_EQ(runs, (std::vector<PageRun>{{0, 1}, {66, 1}})) << text(runs);
    finder.runs_in(5, 65, runs);
    EXPECT_TRUE(runs.empty()) << text(runs);
  }
}

TEST(SwapHolesTest, WithoutARegularFileEveryPageIsData) {
  const std::vector<PageRun> runs = swapholes::data_runs(-1, 0, 16 * kPage);
  EXPECT_EQ(runs, (std::vector<PageRun>{{0, 16}})) << text(runs);
  swapholes::DataFinder none(-1, 0, 16 * kPage);
  std::vector<PageRun> part;
  none.runs_in(2, 3, part);
  EXPECT_EQ(part, (std::vector<PageRun>{{0, 3}})) << text(part);
  UniqueFd zero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(zero);
  EXPECT_FALSE(swapholes::has_holes(zero.get()));
  // A device's lseek means nothing: the finder reads it whole rather than ask.
  const std::vector<PageRun> device = swapholes::data_runs(zero.get(), 0, 16 * kPage);
  EXPECT_EQ(device, (std::vector<PageRun>{{0, 16}})) << text(device);
  EXPECT_FALSE(swapholes::has_holes(-1));
}

// Pages outside the runs count as zero without being looked at, whatever they hold.
TEST(SwapHolesTest, ScanReadsOnlyTheRunsItIsGiven) {
  std::vector<uint8_t> chunk(8 * kPage, 0);
  chunk[1 * kPage + 7] = 1;
  chunk[5 * kPage] = 1;
  swapsparse::PageMap map;
  const std::vector<PageRun> runs{{0, 4}, {6, 2}};
  swapsparse::scan(chunk.data(), chunk.size(), runs, map);
  EXPECT_EQ(map.pages, 8u);
  EXPECT_EQ(map.nonzero, 1u);
  EXPECT_TRUE(map.test(1));
  EXPECT_FALSE(map.test(5));
  swapsparse::scan(chunk.data(), chunk.size(), map);
  EXPECT_EQ(map.nonzero, 2u);
}

class SwapHolesImageTest : public ::testing::Test {
 protected:
  ShmDir shm;
  std::string image = shm.file("vm.img"), swap = shm.file("vm.swap");
  ImageGeometry geo = ImageGeometry::for_vm(kRam, kVcpus);
  std::vector<uint8_t> expected = std::vector<uint8_t>(kRam, 0);
  uint64_t data_pages = 0;

  // An image whose guest wrote a few scattered runs of pages, the rest never touched (holes).
  void SetUp() override {
    Backing b = Backing::open(image, Image::required_size(geo), true);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    std::mt19937_64 rng(11);
    for (uint64_t first : {0ull, 17ull, 300ull, 511ull, 1024ull, 2047ull}) {
      for (uint64_t p = first; p < std::min<uint64_t>(first + 3, kRam / kPage); ++p, ++data_pages)
        for (uint64_t i = 0; i < kPage; i += 8) {
          const uint64_t v = rng() | 1;
          std::memcpy(img.ram() + p * kPage + i, &v, 8);
          std::memcpy(expected.data() + p * kPage + i, &v, 8);
        }
    }
    img.persist_ram();
    img.commit(test::sample_machine(kVcpus, 4));
  }
  uint64_t hole_bytes() const { return kRam - data_pages * kPage; }
};

// The image's RAM that is data, as runs of pages (tmpfs counts a page that was only read as data
// too: reading a hole through a mapping fills it with a zeroed page).
std::vector<PageRun> ram_data(const std::string& path, uint64_t ram_offset) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd) << path;
  return swapholes::data_runs(fd.get(), ram_offset, kRam);
}

// The writer on its own, with and without the file's holes: with them, the holes stay holes (no
// page was faulted in for them); without them (the control), reading every page fills them.
TEST_F(SwapHolesImageTest, ASwapOutReadsNoHole) {
  const std::vector<PageRun> written = ram_data(image, geo.ram_offset);
  ASSERT_EQ(written.size(), 6u) << text(written);
  for (const bool use_holes : {true, false}) {
    SCOPED_TRACE(use_holes ? "holes used" : "holes not used");
    Backing b = Backing::open(image, 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    SwapSource src;
    src.ram = {img.ram(), kRam};
    const std::vector<uint8_t> state(64, 1);
    src.state = state;
    src.identity = identity();
    src.vcpus = kVcpus;
    if (use_holes) {
      src.holes_fd = b.fd();
      src.ram_file_offset = geo.ram_offset;
    }
    PendingSwapFile p = write_swap_file(swap, src, 0x401e, small_chunks());
    EXPECT_EQ(p.figures().ram_read_bytes, kRam);
    if (use_holes) {
      EXPECT_EQ(p.figures().hole_bytes, hole_bytes());
      EXPECT_TRUE(test::contains(p.figures().summary(), "holes, not read")) << p.figures().summary();
      EXPECT_EQ(ram_data(image, geo.ram_offset), written);
    } else {
      EXPECT_EQ(p.figures().hole_bytes, 0u);
      EXPECT_EQ(ram_data(image, geo.ram_offset), (std::vector<PageRun>{{0, kRam / kPage}}));
    }
  }
}

// Through swap_out_image, as `nvhv swap-out` and vm.swap_out run it: the holes are found on the
// image's own descriptor, and the VM comes back with every page as the guest left it.
TEST_F(SwapHolesImageTest, ASparseImageSwapsOutAndBackExactly) {
  const std::vector<PageRun> written = ram_data(image, geo.ram_offset);
  SwapOutResult out;
  {
    Backing b = Backing::open(image, 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus, {false, true});
    SwapOutOptions o;
    o.tuning = small_chunks();
    out = swap_out_image(img, swap, o);
  }
  EXPECT_EQ(out.figures.hole_bytes, hole_bytes());
  const std::string target = shm.file("back.img");
  swap_in_image(swap, target, identity(), kRam, kVcpus, {small_chunks(), false});
  // The swap-in wrote only the used pages, so the image it made has the same holes.
  EXPECT_EQ(ram_data(target, geo.ram_offset), written);
  Backing b = Backing::open(target, Image::required_size(geo), false);
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), img.ram()));
}

}  // namespace
}  // namespace nvhv::persistence
