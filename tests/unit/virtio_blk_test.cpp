// virtio-blk against a scratch image file, driven through a virtqueue as Linux's virtio_blk does.
#include <gtest/gtest.h>

#include "devices/virtio/virtio_spec.hpp"
#include "tests/unit/virtio_test_driver.hpp"

namespace nvhv::test {
namespace {

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingIndirectDesc | virtio::kFRingEventIdx |
                               virtio::kBlkFFlush | virtio::kBlkFSegMax;

struct Request {
  uint64_t hdr, status;
};

struct BlkFixture : ::testing::Test {
  void start(bool readonly = false) {
    rig = std::make_unique<Rig>(readonly);
    driver = std::make_unique<Driver>(rig->g, rig->blk_slot);
    vq = driver->start(kFeatures | (readonly ? virtio::kBlkFRo : 0), 1)[0];
  }
  Guest& g() { return rig->g; }
  Request header(uint32_t type, uint64_t sector) {
    Request r{g().alloc(16), g().alloc(1)};
    g().poke<uint32_t>(r.hdr, type);
    g().poke<uint64_t>(r.hdr + 8, sector);
    g().poke<uint8_t>(r.status, 0xee);
    return r;
  }
  // Submits hdr + `data` + status and returns the status byte the device wrote.
  uint8_t submit(uint32_t type, uint64_t sector, std::vector<Seg> data, bool indirect = false) {
    Request r = header(type, sector);
    std::vector<Seg> segs{{r.hdr, 16, false}};
    segs.insert(segs.end(), data.begin(), data.end());
    segs.push_back({r.status, 1, true});
    if (indirect)
      driver->add_indirect(vq, segs);
    else
      driver->add_chain(vq, segs);
    driver->notify(vq);
    last_used = driver->take_used(vq);
    last_status = r.status;
    return g().peek<uint8_t>(r.status);
  }
  std::vector<uint8_t> guest_bytes(uint64_t gpa, uint64_t n) {
    const uint8_t* p = g().memory.checked_range(gpa, n);
    return {p, p + n};
  }

  std::unique_ptr<Rig> rig;
  std::unique_ptr<Driver> driver;
  Vq vq;
  std::optional<UsedElem> last_used;
  uint64_t last_status = 0;
};

TEST_F(BlkFixture, ConfigReportsCapacityAndSegMax) {
  start();
  EXPECT_EQ(driver->device_config(0, 8), Rig::kImageBytes / 512);
  EXPECT_EQ(driver->device_config(12, 4), 254u) << "seg_max = queue size - 2";
  EXPECT_EQ(driver->device_config(0x3c, 4), 0u);
  EXPECT_EQ(rig->blk->capacity_sectors(), Rig::kImageBytes / 512);
}

TEST_F(BlkFixture, WriteThenReadBackAcrossSegmentsAndFlush) {
  start();
  const uint64_t out = g().alloc(1024);
  for (uint64_t i = 0; i < 1024; ++i) g().poke<uint8_t>(out + i, static_cast<uint8_t>(i ^ 0x5a));
  // Two segments of unequal size: 700 + 324 bytes = two sectors.
  ASSERT_EQ(submit(virtio::kBlkTOut, 3, {{out, 700, false}, {out + 700, 324, false}}), virtio::kBlkSOk);
  ASSERT_TRUE(last_used);
  EXPECT_EQ(last_used->len, 1u) << "only the status byte is device-written";
  EXPECT_EQ(rig->own_image->read(3 * 512, 1024), guest_bytes(out, 1024));
  EXPECT_EQ(rig->own_image->read(2 * 512, 1)[0], TempImage::pattern(2 * 512)) << "neighbouring sector untouched";

  const uint64_t in = g().alloc(1024);
  g().writes.clear();
  ASSERT_EQ(submit(virtio::kBlkTIn, 3, {{in, 100, true}, {in + 100, 924, true}}), virtio::kBlkSOk);
  EXPECT_EQ(guest_bytes(in, 1024), guest_bytes(out, 1024));
  EXPECT_EQ(last_used->len, 1025u);
  // Every byte the device stored into guest RAM was reported for write-back.
  EXPECT_TRUE(g().dirty(in, 1024));
  EXPECT_TRUE(g().dirty(last_status, 1));
  EXPECT_TRUE(g().dirty(vq.used + 2, 2));
  EXPECT_TRUE(g().dirty(vq.used + 4 + 8ull * ((vq.last_used - 1) % vq.size), 8));

  const uint64_t in2 = g().alloc(512);
  ASSERT_EQ(submit(virtio::kBlkTIn, 4, {{in2, 512, true}}, /*indirect=*/true), virtio::kBlkSOk);
  EXPECT_EQ(guest_bytes(in2, 512), guest_bytes(out + 512, 512));

  EXPECT_EQ(submit(virtio::kBlkTFlush, 0, {}), virtio::kBlkSOk);
  EXPECT_NO_THROW(rig->blk->sync());
}

TEST_F(BlkFixture, GetIdAndUnsupportedRequests) {
  start();
  const uint64_t id = g().alloc(20);
  g().poke<uint64_t>(id + 12, ~0ull);
  ASSERT_EQ(submit(virtio::kBlkTGetId, 0, {{id, 20, true}}), virtio::kBlkSOk);
  const auto bytes = guest_bytes(id, 20);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 13), "disk-serial-1");
  EXPECT_EQ(bytes[13], 0) << "NUL-padded";
  EXPECT_EQ(bytes[19], 0);
  EXPECT_EQ(submit(11 /* DISCARD */, 0, {}), virtio::kBlkSUnsupp);
  EXPECT_EQ(submit(13 /* WRITE_ZEROES */, 0, {}), virtio::kBlkSUnsupp);
  EXPECT_EQ(submit(0x7fffffff, 0, {}), virtio::kBlkSUnsupp);
  EXPECT_FALSE(driver->status() & virtio::kStatusNeedsReset) << "unsupported is a status, not a fault";
}

TEST_F(BlkFixture, ReadonlyRejectsWrites) {
  start(/*readonly=*/true);
  EXPECT_TRUE(driver->device_features() & virtio::kBlkFRo);
  const uint64_t out = g().alloc(512);
  std::memset(g().memory.checked_range(out, 512), 0xab, 512);
  EXPECT_EQ(submit(virtio::kBlkTOut, 0, {{out, 512, false}}), virtio::kBlkSIoErr);
  EXPECT_EQ(rig->own_image->read(0, 1)[0], TempImage::pattern(0)) << "image unchanged";
  const uint64_t in = g().alloc(512);
  EXPECT_EQ(submit(virtio::kBlkTIn, 1, {{in, 512, true}}), virtio::kBlkSOk);
  EXPECT_EQ(g().peek<uint8_t>(in + 1), TempImage::pattern(513));
  EXPECT_EQ(submit(virtio::kBlkTFlush, 0, {}), virtio::kBlkSOk);
}

TEST_F(BlkFixture, SectorBoundsAndLengths) {
  start();
  const uint64_t capacity = Rig::kImageBytes / 512;
  const uint64_t buf = g().alloc(1024);
  EXPECT_EQ(submit(virtio::kBlkTIn, capacity - 1, {{buf, 512, true}}), virtio::kBlkSOk) << "last sector";
  EXPECT_EQ(g().peek<uint8_t>(buf), TempImage::pattern((capacity - 1) * 512));
  EXPECT_EQ(submit(virtio::kBlkTIn, capacity - 1, {{buf, 1024, true}}), virtio::kBlkSIoErr) << "runs past the end";
  EXPECT_EQ(submit(virtio::kBlkTIn, capacity, {{buf, 512, true}}), virtio::kBlkSIoErr);
  EXPECT_EQ(submit(virtio::kBlkTOut, capacity, {{buf, 512, false}}), virtio::kBlkSIoErr);
  EXPECT_EQ(submit(virtio::kBlkTIn, ~0ull, {{buf, 512, true}}), virtio::kBlkSIoErr) << "sector * 512 would overflow";
  EXPECT_EQ(submit(virtio::kBlkTIn, ~0ull / 512 + 1, {{buf, 512, true}}), virtio::kBlkSIoErr);
  EXPECT_EQ(submit(virtio::kBlkTIn, 0, {{buf, 100, true}}), virtio::kBlkSIoErr) << "not a whole sector";
  EXPECT_EQ(submit(virtio::kBlkTOut, 0, {{buf, 513, false}}), virtio::kBlkSIoErr);
  EXPECT_EQ(rig->own_image->read(0, 1)[0], TempImage::pattern(0));
  EXPECT_EQ(submit(virtio::kBlkTIn, 0, {}), virtio::kBlkSOk) << "an empty read is fine";

  // A header split over two descriptors is fine; a short one is an I/O error, not a fault.
  Request r = header(virtio::kBlkTIn, 2);
  driver->add_chain(vq, {{r.hdr, 10, false}, {r.hdr + 10, 6, false}, {buf, 512, true}, {r.status, 1, true}});
  driver->notify(vq);
  EXPECT_EQ(g().peek<uint8_t>(r.status), virtio::kBlkSOk);
  EXPECT_EQ(g().peek<uint8_t>(buf), TempImage::pattern(1024));
  r = header(virtio::kBlkTIn, 2);
  driver->add_chain(vq, {{r.hdr, 8, false}, {r.status, 1, true}});
  driver->notify(vq);
  EXPECT_EQ(g().peek<uint8_t>(r.status), virtio::kBlkSIoErr);
  EXPECT_FALSE(driver->status() & virtio::kStatusNeedsReset);
}

TEST(VirtioBlk, MissingImageIsAnError) {
  EXPECT_THROW(virtio::VirtioBlk("virtio-blk0", virtio::BlkOptions{"/nonexistent/nvhv-image", false, "", 256}), std::system_error);
}

}  // namespace
}  // namespace nvhv::test
