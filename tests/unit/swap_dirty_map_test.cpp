// The record of guest RAM written since a swap-in (vmm/swap_dirty_map.hpp): page bitmaps of
// several memory slots land on the right swap chunks of any size, slots outside guest RAM are
// ignored, and a failed harvest makes the map unusable rather than incomplete.
#include <gtest/gtest.h>

#include <vector>

#include "vmm/swap_dirty_map.hpp"

namespace nvhv {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::vector<uint64_t> pages(uint64_t slot_pages, std::initializer_list<uint64_t> dirty) {
  std::vector<uint64_t> words((slot_pages + 63) / 64, 0);
  for (uint64_t p : dirty) words[p / 64] |= uint64_t{1} << (p % 64);
  return words;
}

std::vector<size_t> set(const std::vector<bool>& chunks) {
  std::vector<size_t> out;
  for (size_t i = 0; i < chunks.size(); ++i)
    if (chunks[i]) out.push_back(i);
  return out;
}

TEST(SwapDirtyMapTest, PagesOfEverySlotMarkTheirChunks) {
  // Guest RAM of 10 MiB in two slots (as around a PCI hole): 0..6 MiB and 6..10 MiB; slot 2 is
  // a pmem region, not guest RAM.
  SwapDirtyMap map(10 * kMiB, {{0, 0, 6 * kMiB}, {1, 6 * kMiB, 4 * kMiB}});
  EXPECT_EQ(set(*map.chunks(2 * kMiB)), std::vector<size_t>{});
  auto a = pages(6 * kMiB / 4096, {0, 511, 1024});  // 0 and 511: chunk 0; 1024 = 4 MiB: chunk 2
  map.harvested(0, a.data(), a.size());
  auto b = pages(4 * kMiB / 4096, {1023});  // 6 MiB + 4 MiB - 4 KiB: the last chunk
  map.harvested(1, b.data(), b.size());
  auto pmem = pages(1024, {0, 1, 2});
  map.harvested(2, pmem.data(), pmem.size());
  EXPECT_EQ(set(*map.chunks(2 * kMiB)), (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(set(*map.chunks(64 * 1024)), (std::vector<size_t>{0, 31, 64, 159}));
  EXPECT_EQ(set(*map.chunks(8 * kMiB)), (std::vector<size_t>{0, 1}));
  // Later harvests add to what earlier ones found.
  auto c = pages(6 * kMiB / 4096, {600});  // 2.34 MiB: chunk 1
  map.harvested(0, c.data(), c.size());
  EXPECT_EQ(set(*map.chunks(2 * kMiB)), (std::vector<size_t>{0, 1, 2, 4}));
  EXPECT_EQ(map.why(), "");
}

TEST(SwapDirtyMapTest, AFailedHarvestMakesTheMapUnusable) {
  SwapDirtyMap map(4 * kMiB, {{0, 0, 4 * kMiB}});
  map.harvest_failed(0);
  EXPECT_FALSE(map.chunks(2 * kMiB).has_value());
  EXPECT_NE(map.why().find("slot 0"), std::string::npos) << map.why();
}

TEST(SwapDirtyMapTest, SlotsOutsideRamAndOddChunkSizesAreRefused) {
  EXPECT_THROW(SwapDirtyMap(4 * kMiB, {{0, 2 * kMiB, 4 * kMiB}}), std::invalid_argument);
  SwapDirtyMap map(4 * kMiB, {{0, 0, 4 * kMiB}});
  EXPECT_THROW(map.chunks(4096), std::invalid_argument);
  EXPECT_THROW(map.chunks(96 * 1024), std::invalid_argument);
}

}  // namespace
}  // namespace nvhv
