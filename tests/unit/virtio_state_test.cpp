// Checkpoint state of the PCI and virtio layer: every saved structure round-trips, bad state
// is refused with DecodeError, and a guest carries on after save -> restore into a fresh VMM.
#include <gtest/gtest.h>

#include "devices/pci/config_space.hpp"
#include "devices/virtio/msix.hpp"
#include "devices/virtio/virtio_spec.hpp"
#include "persistence/machine_state.hpp"
#include "persistence/snapshottable.hpp"
#include "tests/unit/virtio_test_driver.hpp"

namespace nvhv::test {
namespace {

using persistence::DecodeError;
using persistence::Decoder;
using persistence::Encoder;

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingIndirectDesc | virtio::kFRingEventIdx |
                               virtio::kBlkFFlush | virtio::kBlkFSegMax;

template <typename SaveFn>
std::vector<uint8_t> encode(SaveFn fn) {
  std::vector<uint8_t> buf;
  Encoder enc(buf);
  fn(enc);
  return buf;
}

TEST(VirtioState, ConfigSpaceRoundTrip) {
  const pci::Identity id{0x1af4, 0x1042, 0x018000, 1, 0x1af4, 0x42, 1};
  pci::ConfigSpace a(id);
  a.add_mem64_bar(0, 0x8000, false);
  const uint8_t body[] = {1, 2, 3, 4};
  a.add_capability(0x09, body);
  a.set_bar_address(0, 0xc0008000);
  const uint8_t cmd[] = {0x06, 0x04};
  a.write(pci::kCommand, cmd);
  const uint8_t line = 11;
  a.write(pci::kInterruptLine, std::span(&line, 1));
  const auto saved = encode([&](Encoder& e) { a.save(e); });

  pci::ConfigSpace b(id);
  b.add_mem64_bar(0, 0x8000, false);
  b.add_capability(0x09, body);
  Decoder in(saved);
  b.restore(in);
  EXPECT_TRUE(in.at_end());
  std::array<uint8_t, 256> ra{}, rb{};
  a.read(0, ra);
  b.read(0, rb);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(b.bar_address(0), 0xc0008000u);
  EXPECT_EQ(b.command(), 0x0406);

  pci::ConfigSpace other(pci::Identity{0x1af4, 0x1043, 0x078000, 1, 0x1af4, 0x43, 1});
  other.add_mem64_bar(0, 0x8000, false);
  other.add_capability(0x09, body);
  Decoder in2(saved);
  EXPECT_THROW(other.restore(in2), DecodeError) << "state of another device";
  Decoder truncated(std::span<const uint8_t>(saved.data(), 100));
  EXPECT_THROW(b.restore(truncated), DecodeError);
}

TEST(VirtioState, QueueStateRoundTrip) {
  virtio::QueueState s;
  s.size = 128;
  s.ready = true;
  s.msix_vector = 3;
  s.desc_addr = 0x1234000;
  s.driver_addr = 0x1235000;
  s.device_addr = 0x1236000;
  s.last_avail = 65530;
  s.used_idx = 65530;
  s.signalled_used = 65529;
  s.signalled_valid = true;
  s.broken = false;
  const auto saved = encode([&](Encoder& e) { virtio::save_queue_state(e, s); });
  Decoder in(saved);
  EXPECT_EQ(virtio::load_queue_state(in), s);
  EXPECT_TRUE(in.at_end());
  auto bad = saved;
  bad[2] = 2;  // "ready" is a boolean
  Decoder in2(bad);
  EXPECT_THROW(virtio::load_queue_state(in2), DecodeError);
}

TEST(VirtioState, MsixRoundTrip) {
  RecordingSink sink;
  virtio::MsixTable a(3, sink);
  const uint32_t entry[4] = {0xfee01000, 0, 0x4041, 1};  // masked
  a.table_write(16, std::span(reinterpret_cast<const uint8_t*>(entry), 16));
  a.set_control(true, false);
  a.notify(1);
  ASSERT_TRUE(a.pending(1));
  const auto saved = encode([&](Encoder& e) { a.save(e); });

  virtio::MsixTable b(3, sink);
  Decoder in(saved);
  b.restore(in);
  EXPECT_TRUE(in.at_end());
  std::array<uint8_t, 48> ta{}, tb{};
  a.table_read(0, ta);
  b.table_read(0, tb);
  EXPECT_EQ(ta, tb);
  EXPECT_TRUE(b.pending(1));
  b.set_control(true, false);
  const uint32_t unmask = 0;
  b.table_write(16 + 12, std::span(reinterpret_cast<const uint8_t*>(&unmask), 4));
  ASSERT_EQ(sink.msis.size(), 1u) << "the restored pending vector fires on unmask";
  EXPECT_EQ(sink.msis[0].address, 0xfee01000u);
  EXPECT_EQ(sink.msis[0].data, 0x4041u);

  virtio::MsixTable c(4, sink);
  Decoder in2(saved);
  EXPECT_THROW(c.restore(in2), DecodeError) << "table size differs";
  auto bad = saved;
  bad[2 + 16 + 12] = 0x80;  // reserved vector-control bit
  Decoder in3(bad);
  EXPECT_THROW(b.restore(in3), DecodeError);
}

TEST(VirtioState, BusRoundTripKeepsTheAddressLatch) {
  Guest a;
  const uint32_t latch = 0x80000004;  // 00:00.0, register 4
  a.pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&latch), 4));
  const uint16_t cmd = 0x0006;
  a.pio.write(0xcfc, std::span(reinterpret_cast<const uint8_t*>(&cmd), 2));  // host bridge command
  a.pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&latch), 4));
  const auto saved = encode([&](Encoder& e) { a.bus->save(e); });

  Guest b;
  Decoder in(saved);
  b.bus->restore(in, 1);
  EXPECT_TRUE(in.at_end());
  uint32_t v = 0;
  b.pio.read(0xcf8, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  EXPECT_EQ(v, latch) << "a checkpoint between the address and data cycles";
  EXPECT_EQ(b.cfg_read(0, 0x04, 2), 0x0006u);
}

TEST(VirtioState, DeviceStatesRoundTripAndRefuseMismatches) {
  Rig r;
  const auto blk = encode([&](Encoder& e) { r.blk->save(e); });
  Decoder in(blk);
  r.blk->restore(in, 1);
  EXPECT_TRUE(in.at_end());
  // The same state against a disk of another size is refused.
  TempImage smaller(4096);
  virtio::VirtioBlk other("virtio-blk0", virtio::BlkOptions{smaller.path, false, "", 256});
  Decoder in2(blk);
  EXPECT_THROW(other.restore(in2, 1), DecodeError);
  virtio::VirtioBlk ro("virtio-blk0", virtio::BlkOptions{r.image, true, "", 256});
  Decoder in3(blk);
  EXPECT_THROW(ro.restore(in3, 1), DecodeError);

  ASSERT_EQ(r.con->inject_input(std::vector<uint8_t>{'h', 'i'}), 2u);
  const auto con = encode([&](Encoder& e) { r.con->save(e); });
  virtio::VirtioConsole fresh("virtio-console0");
  Decoder in4(con);
  fresh.restore(in4, 1);
  EXPECT_EQ(fresh.pending_input(), 2u);
  const auto huge = encode([&](Encoder& e) { e.u32(virtio::VirtioConsole::kMaxPendingInput + 1); });
  Decoder in5(huge);
  EXPECT_THROW(fresh.restore(in5, 1), DecodeError);
}

// Where a top-level record with `tag` starts its body in transport state.
size_t record_body(const std::vector<uint8_t>& state, uint16_t tag) {
  size_t at = 0;
  while (at + 8 <= state.size()) {
    uint16_t t;
    uint32_t len;
    std::memcpy(&t, &state[at], 2);
    std::memcpy(&len, &state[at + 4], 4);
    if (t == tag) return at + 8;
    at += 8 + len;
  }
  throw std::runtime_error("record not found");
}

struct SaveRestoreFixture : ::testing::Test {
  // Takes a checkpoint of rig `a` (devices + a RAM copy) and builds `b` from it, as a resume
  // in a new process would: same image file, same RAM contents, devices restored.
  void checkpoint_and_resume() {
    std::vector<const persistence::Snapshottable*> devices{a->g.bus.get(), a->blk_pci.get(), a->con_pci.get()};
    a->blk_pci->quiesce();
    a->con_pci->quiesce();
    a->blk->sync();
    persistence::save_devices(devices, saved);
    b = std::make_unique<Rig>(false, a->image);
    std::memcpy(b->g.ram.bytes(), a->g.ram.bytes(), Guest::kRamSize);
    b->g.next_alloc = a->g.next_alloc;
    std::vector<persistence::Snapshottable*> targets{b->g.bus.get(), b->blk_pci.get(), b->con_pci.get()};
    persistence::restore_devices(targets, saved);
  }
  std::unique_ptr<Rig> a = std::make_unique<Rig>();
  std::unique_ptr<Rig> b;
  std::vector<persistence::DeviceState> saved;
};

TEST_F(SaveRestoreFixture, GuestContinuesAfterRestore) {
  Driver da(a->g, a->blk_slot);
  Vq vq = da.start(kFeatures, 1)[0];
  const uint64_t hdr = a->g.alloc(16), data = a->g.alloc(512), status = a->g.alloc(1);
  a->g.poke<uint32_t>(hdr, virtio::kBlkTOut);
  a->g.poke<uint64_t>(hdr + 8, 9);
  std::memset(a->g.memory.checked_range(data, 512), 0x77, 512);
  da.add_chain(vq, {{hdr, 16, false}, {data, 512, false}, {status, 1, true}});
  da.notify(vq);
  ASSERT_EQ(a->g.peek<uint8_t>(status), virtio::kBlkSOk);
  ASSERT_TRUE(da.take_used(vq));

  Driver ca(a->g, a->con_slot);
  auto cq = ca.start(virtio::kFVersion1 | virtio::kFRingEventIdx, 2);
  ASSERT_EQ(a->con->inject_input(std::vector<uint8_t>{'z'}), 1u);  // pending: no receive buffer yet
  checkpoint_and_resume();

  // The resumed VMM presents the same device, in the same state, at the same place.
  Driver db(b->g, b->blk_slot);
  EXPECT_EQ(db.bar(), da.bar());
  EXPECT_EQ(db.status(), 0x0f);
  EXPECT_EQ(b->g.cfg_read(b->blk_slot, 0x04, 2) & 0x6, 0x6u);
  // Reading sector 9 back through the restored queue (the driver's ring state came with RAM).
  b->g.poke<uint32_t>(hdr, virtio::kBlkTIn);
  const uint64_t in = b->g.alloc(512);
  db.add_chain(vq, {{hdr, 16, false}, {in, 512, true}, {status, 1, true}});
  db.notify(vq);
  EXPECT_EQ(b->g.peek<uint8_t>(status), virtio::kBlkSOk);
  EXPECT_EQ(b->g.peek<uint8_t>(in + 100), 0x77);
  auto used = db.take_used(vq);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 513u);
  ASSERT_FALSE(b->g.sink.msis.empty());
  EXPECT_EQ(b->g.sink.msis.back().address, 0xfee00000u) << "the MSI-X table came back";
  EXPECT_EQ(b->g.sink.msis.back().data, 0x40u);

  // The console input that was pending at the checkpoint reaches the resumed guest.
  Driver cb(b->g, b->con_slot);
  const uint64_t buf = b->g.alloc(4);
  cb.add_chain(cq[0], {{buf, 4, true}});
  cb.notify(cq[0]);
  used = cb.take_used(cq[0]);
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 1u);
  EXPECT_EQ(b->g.peek<uint8_t>(buf), 'z');
}

TEST_F(SaveRestoreFixture, IntxLevelIsDrivenAgainOnRestore) {
  Driver da(a->g, a->blk_slot);
  Vq vq = da.start(kFeatures, 1, /*msix=*/false)[0];
  const uint64_t hdr = a->g.alloc(16), status = a->g.alloc(1);
  a->g.poke<uint32_t>(hdr, virtio::kBlkTFlush);
  da.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  da.notify(vq);
  ASSERT_TRUE(a->g.sink.lines[16]);
  checkpoint_and_resume();
  EXPECT_TRUE(b->g.sink.lines[16]) << "the restored device still asserts INTA#";
  Driver db(b->g, b->blk_slot);
  EXPECT_EQ(db.read_isr(), virtio::kIsrQueue);
  EXPECT_FALSE(b->g.sink.lines[16]);
}

TEST_F(SaveRestoreFixture, RefusesInFlightRequestsAndMovedDevices) {
  Driver da(a->g, a->blk_slot);
  da.start(kFeatures, 1);
  checkpoint_and_resume();
  const persistence::DeviceState& blk = saved[1];
  ASSERT_EQ(blk.id, "virtio-blk0");

  // A queue whose used index lags its available index: requests were in flight.
  auto bad = blk.data;
  const size_t q = record_body(bad, 3);
  bad[q + 2 + 1 + 2 + 24 + 2] ^= 1;  // used_idx follows size, ready, vector, 3 addresses, last_avail
  Decoder in(bad);
  EXPECT_THROW(b->blk_pci->restore(in, 1), DecodeError);

  // The same device placed elsewhere (another device added before it) is refused.
  Guest g;
  auto extra = std::make_shared<virtio::VirtioPci>(std::make_shared<virtio::VirtioConsole>("virtio-console9"), g.dma, g.sink);
  g.bus->add(extra);
  auto moved = std::make_shared<virtio::VirtioPci>(std::make_shared<virtio::VirtioBlk>("virtio-blk0", virtio::BlkOptions{a->image, false, "", 256}),
                                                   g.dma, g.sink);
  g.bus->add(moved);
  Decoder in2(blk.data);
  try {
    moved->restore(in2, 1);
    FAIL() << "restored a device whose BAR moved";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("PCI layout changed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nvhv::test
