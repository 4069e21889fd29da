// The split-virtqueue walker against hostile drivers, and notification suppression in both
// directions. A bad chain must never crash or reach outside guest RAM: it sets
// DEVICE_NEEDS_RESET, raises the configuration interrupt, and nothing more happens on that
// queue until the driver resets the device.
#include <gtest/gtest.h>

#include <functional>

#include "devices/virtio/virtio_spec.hpp"
#include "tests/unit/virtio_test_driver.hpp"

namespace nvhv::test {
namespace {

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingIndirectDesc | virtio::kFRingEventIdx | virtio::kBlkFFlush;
constexpr uint32_t kQueueVectorData = 0x40;   // vector 0
constexpr uint32_t kConfigVectorData = 0x41;  // vector 1

struct Hostile {
  const char* name;
  uint64_t features;
  // Builds the bad request on the blk queue (and publishes it); hdr/status are valid buffers.
  std::function<void(Guest&, Driver&, Vq&, uint64_t hdr, uint64_t status)> build;
};

void publish_head(Guest& g, Vq& vq, uint16_t head) {
  g.poke<uint16_t>(vq.avail + 4 + 2ull * (vq.avail_idx % vq.size), head);
  ++vq.avail_idx;
  g.poke<uint16_t>(vq.avail + 2, vq.avail_idx);
}

// Writes an indirect table of `n` descriptors at a fresh address; returns it.
uint64_t table(Guest& g, const std::vector<std::array<uint64_t, 4>>& descs) {
  const uint64_t t = g.alloc(16 * descs.size(), 16);
  for (size_t i = 0; i < descs.size(); ++i) {
    g.poke<uint64_t>(t + 16 * i, descs[i][0]);
    g.poke<uint32_t>(t + 16 * i + 8, static_cast<uint32_t>(descs[i][1]));
    g.poke<uint16_t>(t + 16 * i + 12, static_cast<uint16_t>(descs[i][2]));
    g.poke<uint16_t>(t + 16 * i + 14, static_cast<uint16_t>(descs[i][3]));
  }
  return t;
}

const std::vector<Hostile>& hostile_cases() {
  using virtio::kDescFIndirect;
  using virtio::kDescFNext;
  using virtio::kDescFWrite;
  static const std::vector<Hostile> cases = {
      {"two-descriptor loop", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 16, kDescFNext, 1);
         d.write_desc(vq, 1, hdr, 16, kDescFNext, 0);
         publish_head(g, vq, 0);
       }},
      {"self loop", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 5, hdr, 16, kDescFNext, 5);
         publish_head(g, vq, 5);
       }},
      {"buffer outside guest RAM", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 16, kDescFNext, 1);
         d.write_desc(vq, 1, Guest::kRamSize + 4096, 1, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"buffer straddling the end of RAM", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 16, kDescFNext, 1);
         d.write_desc(vq, 1, Guest::kRamSize - 8, 16, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"huge length", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 0xffffffff, kDescFNext, 1);
         d.write_desc(vq, 1, hdr, 1, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"address wrapping past 2^64", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t, uint64_t status) {
         d.write_desc(vq, 0, 0xfffffffffffffff0ull, 0x20, kDescFNext, 1);
         d.write_desc(vq, 1, status, 1, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"chain over 4 GiB", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t, uint64_t status) {
         // 80 in-RAM descriptors of 60 MiB each (all the same memory) add up past 2^32.
         for (uint16_t i = 0; i < 80; ++i) d.write_desc(vq, i, 0, 60u << 20, kDescFNext, static_cast<uint16_t>(i + 1));
         d.write_desc(vq, 80, status, 1, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"head index past the queue size", kFeatures,
       [](Guest& g, Driver&, Vq& vq, uint64_t, uint64_t) { publish_head(g, vq, vq.size); }},
      {"next index past the queue size", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 16, kDescFNext, static_cast<uint16_t>(vq.size + 5));
         publish_head(g, vq, 0);
       }},
      {"available idx jumps past the queue size", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
         vq.avail_idx = static_cast<uint16_t>(vq.avail_idx + vq.size + 1);
         g.poke<uint16_t>(vq.avail + 2, vq.avail_idx);
       }},
      {"readable after writable", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         d.write_desc(vq, 0, status, 1, kDescFWrite | kDescFNext, 1);
         d.write_desc(vq, 1, hdr, 16, 0, 0);
         publish_head(g, vq, 0);
       }},
      {"indirect without the feature", kFeatures & ~virtio::kFRingIndirectDesc,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         const uint64_t t = table(g, {{hdr, 16, kDescFNext, 1}, {status, 1, kDescFWrite, 0}});
         d.write_desc(vq, 0, t, 32, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"indirect inside indirect", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         const uint64_t inner = table(g, {{hdr, 16, kDescFNext, 1}, {status, 1, kDescFWrite, 0}});
         const uint64_t outer = table(g, {{inner, 32, kDescFIndirect, 0}});
         d.write_desc(vq, 0, outer, 16, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"indirect with NEXT", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         const uint64_t t = table(g, {{hdr, 16, kDescFNext, 1}, {status, 1, kDescFWrite, 0}});
         d.write_desc(vq, 0, t, 32, kDescFIndirect | kDescFNext, 1);
         d.write_desc(vq, 1, status, 1, kDescFWrite, 0);
         publish_head(g, vq, 0);
       }},
      {"indirect table length not a multiple of 16", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t status) {
         const uint64_t t = table(g, {{hdr, 16, kDescFNext, 1}, {status, 1, kDescFWrite, 0}});
         d.write_desc(vq, 0, t, 31, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"empty indirect table", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t, uint64_t) {
         d.write_desc(vq, 0, 0x1000, 0, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"indirect table outside guest RAM", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t, uint64_t) {
         d.write_desc(vq, 0, Guest::kRamSize - 16, 64, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"loop inside an indirect table", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         const uint64_t t = table(g, {{hdr, 16, kDescFNext, 1}, {hdr, 16, kDescFNext, 0}});
         d.write_desc(vq, 0, t, 32, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"next past the indirect table", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         const uint64_t t = table(g, {{hdr, 16, kDescFNext, 2}, {hdr, 16, 0, 0}});
         d.write_desc(vq, 0, t, 32, kDescFIndirect, 0);
         publish_head(g, vq, 0);
       }},
      {"block request without a status byte", kFeatures,
       [](Guest& g, Driver& d, Vq& vq, uint64_t hdr, uint64_t) {
         d.write_desc(vq, 0, hdr, 16, 0, 0);
         publish_head(g, vq, 0);
       }},
  };
  return cases;
}

TEST(VirtioQueue, HostileChainsSetNeedsResetAndNothingElse) {
  for (const Hostile& c : hostile_cases()) {
    SCOPED_TRACE(c.name);
    Rig r;
    Guest& g = r.g;
    Driver d(g, r.blk_slot);
    auto vqs = d.start(c.features, 1);
    Vq& vq = vqs[0];
    const uint64_t hdr = g.alloc(16), status = g.alloc(1);
    g.poke<uint32_t>(hdr, virtio::kBlkTFlush);
    g.poke<uint8_t>(status, 0xee);
    c.build(g, d, vq, hdr, status);
    d.notify(vq);

    EXPECT_TRUE(d.status() & virtio::kStatusNeedsReset);
    EXPECT_EQ(d.used_idx(vq), 0) << "nothing completed";
    EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 0u);
    EXPECT_EQ(g.sink.msis_with_data(kConfigVectorData), 1u) << "configuration-change interrupt";
    // Further notifications are ignored until reset.
    d.notify(vq);
    EXPECT_EQ(g.sink.msis.size(), 1u);

    // The driver resets and starts again: the device works.
    vqs = d.start(kFeatures, 1);
    EXPECT_FALSE(d.status() & virtio::kStatusNeedsReset);
    g.poke<uint8_t>(status, 0xee);
    d.add_chain(vqs[0], {{hdr, 16, false}, {status, 1, true}});
    d.notify(vqs[0]);
    EXPECT_EQ(g.peek<uint8_t>(status), virtio::kBlkSOk);
    EXPECT_EQ(d.used_idx(vqs[0]), 1);
  }
}

TEST(VirtioQueue, ChainOfExactlyQueueSizeIsAccepted) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures, 1);
  Vq& vq = vqs[0];
  // header + 254 data segments of one sector + status = 256 descriptors: the spec's limit.
  const uint64_t hdr = g.alloc(16), data = g.alloc(254 * 512), status = g.alloc(1);
  g.poke<uint32_t>(hdr, virtio::kBlkTIn);
  std::vector<Seg> segs{{hdr, 16, false}};
  for (int i = 0; i < 254; ++i) segs.push_back({data + 512ull * i, 512, true});
  segs.push_back({status, 1, true});
  d.add_chain(vq, segs);
  d.notify(vq);
  EXPECT_FALSE(d.status() & virtio::kStatusNeedsReset);
  EXPECT_EQ(g.peek<uint8_t>(status), virtio::kBlkSOk);
  auto used = d.take_used(vq);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 254u * 512 + 1);
}

TEST(VirtioQueue, EventIdxSuppressesUsedNotifications) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures, 1);
  Vq& vq = vqs[0];
  vq.auto_used_event = false;
  const uint64_t used_event = vq.avail + 4 + 2ull * vq.size;
  const uint64_t avail_event = vq.used + 4 + 8ull * vq.size;
  const uint64_t hdr = g.alloc(16), status = g.alloc(1);
  g.poke<uint32_t>(hdr, virtio::kBlkTFlush);
  auto one = [&] {
    d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
    d.notify(vq);
  };
  one();  // the first completion after enabling always notifies
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 1u);
  // "Interrupt me once used idx passes 3", i.e. after the entry at index 3 is written.
  g.poke<uint16_t>(used_event, 3);
  one();  // used idx 2
  one();  // used idx 3
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 1u);
  one();  // used idx 4: crosses used_event
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 2u);
  one();  // 5: used_event is behind, no interrupt
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 2u);
  // Batched: two published before one notify, used_event in the middle of the batch.
  g.poke<uint16_t>(used_event, 5);
  d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  d.notify(vq);
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 3u);
  EXPECT_EQ(d.used_idx(vq), 7);
  // The device asks to be notified when the driver publishes the next entry.
  EXPECT_EQ(g.peek<uint16_t>(avail_event), vq.avail_idx);
  EXPECT_TRUE(g.dirty(avail_event, 2));
  EXPECT_EQ(g.peek<uint16_t>(vq.avail), 0) << "avail flags untouched";
  EXPECT_EQ(g.peek<uint16_t>(vq.used), 0) << "used flags stay 0 with EVENT_IDX";
}

TEST(VirtioQueue, NoInterruptFlagWithoutEventIdx) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures & ~virtio::kFRingEventIdx, 1);
  Vq& vq = vqs[0];
  const uint64_t hdr = g.alloc(16), status = g.alloc(1);
  g.poke<uint32_t>(hdr, virtio::kBlkTFlush);
  const uint64_t avail_event = vq.used + 4 + 8ull * vq.size;
  g.poke<uint16_t>(avail_event, 0x5a5a);
  g.poke<uint16_t>(vq.avail, virtio::kAvailFNoInterrupt);
  d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  d.notify(vq);
  EXPECT_EQ(d.used_idx(vq), 1);
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 0u);
  g.poke<uint16_t>(vq.avail, 0);
  d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  d.notify(vq);
  EXPECT_EQ(g.sink.msis_with_data(kQueueVectorData), 1u);
  EXPECT_EQ(g.peek<uint16_t>(avail_event), 0x5a5a) << "avail_event belongs to EVENT_IDX only";
}

TEST(VirtioQueue, MixedDirectThenIndirectChain) {
  // Spec 2.7.5.3.2: zero or more direct descriptors followed by one indirect one.
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures, 1);
  Vq& vq = vqs[0];
  const uint64_t hdr = g.alloc(16), data = g.alloc(1024), status = g.alloc(1);
  g.poke<uint32_t>(hdr, virtio::kBlkTIn);
  g.poke<uint64_t>(hdr + 8, 2);
  const uint64_t t = table(g, {{data, 1024, virtio::kDescFWrite | virtio::kDescFNext, 1}, {status, 1, virtio::kDescFWrite, 0}});
  d.write_desc(vq, 0, hdr, 16, virtio::kDescFNext, 1);
  d.write_desc(vq, 1, t, 32, virtio::kDescFIndirect | virtio::kDescFWrite, 0);  // WRITE is ignored here
  publish_head(g, vq, 0);
  d.notify(vq);
  ASSERT_FALSE(d.status() & virtio::kStatusNeedsReset);
  EXPECT_EQ(g.peek<uint8_t>(status), virtio::kBlkSOk);
  EXPECT_EQ(g.peek<uint8_t>(data + 5), TempImage::pattern(1024 + 5));
}

}  // namespace
}  // namespace nvhv::test
