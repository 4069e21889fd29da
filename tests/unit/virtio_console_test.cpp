// virtio-console: guest output to the host callback, host input into guest receive buffers.
#include <gtest/gtest.h>

#include "devices/virtio/virtio_spec.hpp"
#include "tests/unit/virtio_test_driver.hpp"

namespace nvhv::test {
namespace {

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingIndirectDesc | virtio::kFRingEventIdx;
constexpr uint32_t kRxVectorData = 0x40, kTxVectorData = 0x41;

struct ConsoleFixture : ::testing::Test {
  ConsoleFixture() : d(r.g, r.con_slot) {}
  void start() {
    auto vqs = d.start(kFeatures, 2);
    rx = vqs[0];
    tx = vqs[1];
  }
  uint64_t text(const std::string& s) {
    const uint64_t a = r.g.alloc(s.size(), 1);
    r.g.memory.write(a, std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    return a;
  }
  std::string guest_string(uint64_t gpa, uint64_t n) {
    const uint8_t* p = r.g.memory.checked_range(gpa, n);
    return std::string(p, p + n);
  }
  size_t inject(const std::string& s) { return r.con->inject_input(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size())); }

  Rig r;
  Driver d;
  Vq rx, tx;
};

TEST_F(ConsoleFixture, GuestOutputReachesTheHost) {
  start();
  EXPECT_EQ(d.device_features() & ~kFeatures & 0xffffffffffull, 0u) << "no optional console features";
  const uint64_t a = text("hello "), b = text("world\n");
  d.add_chain(tx, {{a, 6, false}, {b, 6, false}});
  d.notify(tx);
  EXPECT_EQ(r.output, "hello world\n");
  auto used = d.take_used(tx);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(r.g.sink.msis_with_data(kTxVectorData), 1u);
}

TEST_F(ConsoleFixture, HostInputWaitsForReceiveBuffers) {
  start();
  EXPECT_EQ(inject("abc"), 3u);
  EXPECT_EQ(r.con->pending_input(), 3u);
  EXPECT_EQ(r.g.sink.msis_with_data(kRxVectorData), 0u);

  const uint64_t small = r.g.alloc(2);
  d.add_chain(rx, {{small, 2, true}});
  d.notify(rx);
  auto used = d.take_used(rx);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 2u);
  EXPECT_EQ(guest_string(small, 2), "ab");
  EXPECT_TRUE(r.g.dirty(small, 2));
  EXPECT_EQ(r.con->pending_input(), 1u);

  const uint64_t big = r.g.alloc(16);
  d.add_chain(rx, {{big, 16, true}});
  d.notify(rx);
  used = d.take_used(rx);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 1u);
  EXPECT_EQ(guest_string(big, 1), "c");

  // With a buffer already posted, input goes straight in and interrupts.
  const size_t before = r.g.sink.msis_with_data(kRxVectorData);
  const uint64_t third = r.g.alloc(16);
  d.add_chain(rx, {{third, 16, true}});
  d.notify(rx);  // nothing pending: the buffer stays posted
  EXPECT_FALSE(d.take_used(rx));
  EXPECT_EQ(inject("xyz"), 3u);
  used = d.take_used(rx);
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_string(third, 3), "xyz");
  EXPECT_EQ(r.g.sink.msis_with_data(kRxVectorData), before + 1);
}

TEST_F(ConsoleFixture, InputBeforeDriverOkIsDeliveredAtDriverOk) {
  EXPECT_EQ(inject("early"), 5u);
  d.enable_pci();
  ASSERT_TRUE(d.negotiate(kFeatures));
  rx = d.setup_queue(0);
  tx = d.setup_queue(1);
  const uint64_t buf = r.g.alloc(8);
  d.add_chain(rx, {{buf, 8, true}});
  d.notify(rx);
  EXPECT_FALSE(d.take_used(rx)) << "no buffers are consumed before DRIVER_OK";
  d.driver_ok();
  auto used = d.take_used(rx);
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_string(buf, used->len), "early");
}

TEST_F(ConsoleFixture, InputBufferIsBounded) {
  start();
  const std::string big(virtio::VirtioConsole::kMaxPendingInput + 100, 'x');
  EXPECT_EQ(inject(big), virtio::VirtioConsole::kMaxPendingInput);
  EXPECT_EQ(inject("more"), 0u);
  EXPECT_EQ(r.con->pending_input(), virtio::VirtioConsole::kMaxPendingInput);
}

TEST_F(ConsoleFixture, QuiescedDeviceLeavesGuestRamAlone) {
  start();
  const uint64_t buf = r.g.alloc(8);
  d.add_chain(rx, {{buf, 8, true}});
  d.notify(rx);
  r.con_pci->quiesce();
  r.g.writes.clear();
  EXPECT_EQ(inject("q"), 1u);
  EXPECT_FALSE(d.take_used(rx));
  EXPECT_TRUE(r.g.writes.empty()) << "no guest RAM store while quiesced for a checkpoint";
  r.con_pci->resume();
  auto used = d.take_used(rx);
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_string(buf, 1), "q");
}

TEST_F(ConsoleFixture, ReceiveBufferWithoutWritableSpaceIsAFault) {
  start();
  const uint64_t buf = text("ro");
  d.add_chain(rx, {{buf, 2, false}});
  d.notify(rx);
  EXPECT_FALSE(d.status() & virtio::kStatusNeedsReset) << "nothing to deliver yet";
  inject("!");
  EXPECT_TRUE(d.status() & virtio::kStatusNeedsReset);
  EXPECT_EQ(guest_string(buf, 2), "ro");
}

}  // namespace
}  // namespace nvhv::test
