// PCI enumeration and the virtio PCI transport, driven through the port and MMIO buses the
// way a guest's PCI core and virtio_pci driver touch them.
#include <gtest/gtest.h>

#include <set>

#include "devices/virtio/virtio_spec.hpp"
#include "tests/unit/virtio_test_driver.hpp"

namespace nvhv::test {
namespace {

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingIndirectDesc | virtio::kFRingEventIdx | virtio::kBlkFFlush;

uint32_t port_read32(Guest& g, uint16_t port) {
  uint32_t v = 0;
  g.pio.read(port, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  return v;
}
void port_write(Guest& g, uint16_t port, uint32_t v, size_t size) {
  g.pio.write(port, std::span(reinterpret_cast<const uint8_t*>(&v), size));
}

// A flush request (header + status byte) on the blk queue; returns the status byte's address.
uint64_t submit_flush(Guest& g, Driver& d, Vq& vq) {
  const uint64_t hdr = g.alloc(16), status = g.alloc(1);
  g.poke<uint32_t>(hdr, virtio::kBlkTFlush);
  g.poke<uint8_t>(status, 0xee);
  d.add_chain(vq, {{hdr, 16, false}, {status, 1, true}});
  d.notify(vq);
  return status;
}

TEST(VirtioPci, Conf1ProbeFindsHostBridge) {
  Rig r;
  Guest& g = r.g;
  // Linux's pci_check_type1(): a byte write to 0xCFB must not disturb the address latch, and
  // a dword written to 0xCF8 reads back unchanged.
  port_write(g, 0xcfb, 0x01, 1);
  port_write(g, 0xcf8, 0x80000000, 4);
  EXPECT_EQ(port_read32(g, 0xcf8), 0x80000000u);
  port_write(g, 0xcf8, 0x80001803, 4);
  EXPECT_EQ(port_read32(g, 0xcf8), 0x80001800u) << "the low two bits read as zero";

  EXPECT_EQ(g.cfg_read(0, 0x00, 2), pci::kHostBridgeVendor);
  EXPECT_EQ(g.cfg_read(0, 0x02, 2), pci::kHostBridgeDevice);
  EXPECT_EQ(g.cfg_read(0, 0x08, 4) >> 8, 0x060000u) << "class: host bridge";
  EXPECT_EQ(g.cfg_read(0, 0x0e, 1), 0u) << "type 0, single function";
  EXPECT_EQ(g.cfg_read(0, 0x10, 4), 0u) << "no BARs";

  EXPECT_EQ(g.cfg_read(5, 0x00, 4), 0xffffffffu) << "empty slot";
  // Function 1 of slot 1, bus 1, and the enable bit clear all read as no device.
  uint32_t v = 0;
  for (uint32_t address : {0x80000000u | 1u << 11 | 1u << 8, 0x80010000u, 0x00000800u}) {
    port_write(g, 0xcf8, address, 4);
    g.pio.read(0xcfc, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    EXPECT_EQ(v, 0xffffffffu) << std::hex << address;
  }
}

TEST(VirtioPci, EnumeratesModernDevicesWithCapabilities) {
  Rig r;
  Guest& g = r.g;
  ASSERT_EQ(r.blk_slot, 1);
  ASSERT_EQ(r.con_slot, 2);
  struct Expect {
    uint8_t slot;
    uint16_t device;
    uint32_t cls;
  };
  for (const Expect& e : {Expect{1, 0x1042, 0x018000}, Expect{2, 0x1043, 0x078000}}) {
    SCOPED_TRACE(e.slot);
    EXPECT_EQ(g.cfg_read(e.slot, 0x00, 2), 0x1af4u);
    EXPECT_EQ(g.cfg_read(e.slot, 0x02, 2), e.device);
    EXPECT_GE(g.cfg_read(e.slot, 0x08, 1), 1u) << "non-transitional revision";
    EXPECT_EQ(g.cfg_read(e.slot, 0x08, 4) >> 8, e.cls);
    EXPECT_EQ(g.cfg_read(e.slot, 0x2c, 2), 0x1af4u);
    EXPECT_GE(g.cfg_read(e.slot, 0x2e, 2), 0x40u);
    EXPECT_TRUE(g.cfg_read(e.slot, 0x06, 2) & 0x10) << "capability list bit";
    EXPECT_EQ(g.cfg_read(e.slot, 0x3d, 1), 1u) << "INTA#";
    EXPECT_EQ(g.cfg_read(e.slot, 0x3c, 1), 16u + e.slot - 1);

    Driver d(g, e.slot);
    const auto ids = d.capability_ids();
    ASSERT_LT(ids.size(), 48u) << "capability list must terminate";
    EXPECT_EQ(ids.front(), 0x11) << "MSI-X";
    std::set<uint8_t> types;
    for (uint8_t t = 1; t <= 5; ++t)
      if (auto cap = d.virtio_cap(t)) {
        types.insert(t);
        EXPECT_EQ(*cap % 4, 0u);
        EXPECT_EQ(g.cfg_read(e.slot, *cap + 4, 1), 0u) << "in BAR0";
        const uint32_t off = g.cfg_read(e.slot, *cap + 8, 4), len = g.cfg_read(e.slot, *cap + 12, 4);
        if (t != virtio::kPciCapPciCfg) {
          EXPECT_LE(uint64_t{off} + len, virtio::bar::kSize);
        }
      }
    EXPECT_EQ(types, (std::set<uint8_t>{1, 2, 3, 4, 5}));
    const uint32_t notify = *d.virtio_cap(virtio::kPciCapNotify);
    EXPECT_EQ(g.cfg_read(e.slot, notify + 2, 1), 20u) << "cap_len includes notify_off_multiplier";
    EXPECT_EQ(g.cfg_read(e.slot, notify + 16, 4), virtio::bar::kNotifyMultiplier);
  }
  const auto routes = g.bus->intx_routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].slot, 1);
  EXPECT_EQ(routes[0].pin, 1);
  EXPECT_EQ(routes[0].gsi, 16u);
  EXPECT_EQ(routes[1].gsi, 17u);
}

TEST(VirtioPci, BarSizingPlacementAndDecode) {
  Rig r;
  Guest& g = r.g;
  std::vector<uint64_t> bases;
  for (uint8_t slot : {r.blk_slot, r.con_slot}) {
    const uint32_t lo = g.cfg_read(slot, 0x10, 4), hi = g.cfg_read(slot, 0x14, 4);
    EXPECT_EQ(lo & 0xf, 0x4u) << "64-bit, non-prefetchable memory BAR";
    const uint64_t base = (lo & ~0xfull) | uint64_t{hi} << 32;
    EXPECT_GE(base, pci::kDefaultMmioWindow.base);
    EXPECT_LE(base + virtio::bar::kSize, layout::kIoapicBase);
    EXPECT_EQ(base % virtio::bar::kSize, 0u);
    bases.push_back(base);
    // Sizing as Linux's __pci_read_base does it: all-ones to both halves, read, restore.
    g.cfg_write(slot, 0x10, 4, 0xffffffff);
    g.cfg_write(slot, 0x14, 4, 0xffffffff);
    EXPECT_EQ(g.cfg_read(slot, 0x10, 4), 0xffff8004u);
    EXPECT_EQ(g.cfg_read(slot, 0x14, 4), 0xffffffffu);
    g.cfg_write(slot, 0x10, 4, lo);
    g.cfg_write(slot, 0x14, 4, hi);
    EXPECT_EQ((g.cfg_read(slot, 0x10, 4) & ~0xfull) | uint64_t{g.cfg_read(slot, 0x14, 4)} << 32, base);
    for (uint32_t reg : {0x18u, 0x1cu, 0x20u, 0x24u, 0x30u}) {
      g.cfg_write(slot, reg, 4, 0xffffffff);
      EXPECT_EQ(g.cfg_read(slot, reg, 4), 0u) << "unimplemented BAR/ROM at " << reg;
    }
  }
  EXPECT_GE(bases[1], bases[0] + virtio::bar::kSize) << "BARs overlap";

  Driver d(g, r.blk_slot);
  EXPECT_EQ(d.common(18, 2), 0xffffu) << "memory decode is off until the driver enables it";
  d.enable_pci();
  EXPECT_EQ(d.common(18, 2), 1u) << "num_queues";
  // A guest that moves the BAR finds nothing at either address (nvhv does not relocate).
  g.cfg_write(r.blk_slot, 0x10, 4, static_cast<uint32_t>(bases[0] + 0x100000));
  EXPECT_EQ(d.common(18, 2), 0xffffu);
  g.cfg_write(r.blk_slot, 0x10, 4, static_cast<uint32_t>(bases[0]));
  EXPECT_EQ(d.common(18, 2), 1u);
}

TEST(VirtioPci, FeatureNegotiation) {
  Rig r;
  Driver d(r.g, r.blk_slot);
  d.enable_pci();
  const uint64_t offered = d.device_features();
  EXPECT_EQ(offered & kFeatures, kFeatures);
  EXPECT_TRUE(offered & virtio::kBlkFSegMax);
  EXPECT_FALSE(offered & virtio::kBlkFRo);
  d.set_common(0, 4, 2);
  EXPECT_EQ(d.common(4, 4), 0u) << "feature words past 63 are zero";

  EXPECT_FALSE(d.negotiate(kFeatures & ~virtio::kFVersion1)) << "legacy drivers are refused";
  EXPECT_FALSE(d.negotiate(kFeatures | 1ull << 40)) << "a feature that was not offered";
  EXPECT_TRUE(d.negotiate(kFeatures));
  d.set_common(8, 4, 0);
  d.set_common(12, 4, 0);
  EXPECT_EQ(d.common(12, 4), kFeatures & 0xffffffff) << "features are frozen after FEATURES_OK";
  d.set_status(0);
  EXPECT_EQ(d.status(), 0) << "reset";
  EXPECT_EQ(d.common(12, 4), 0u);
}

TEST(VirtioPci, QueueConfigurationAndFaultyEnable) {
  Rig r;
  Driver c(r.g, r.con_slot);
  c.enable_pci();
  EXPECT_EQ(c.common(18, 2), 2u);
  c.set_common(22, 2, 1);
  EXPECT_EQ(c.common(24, 2), 64u);
  EXPECT_EQ(c.common(30, 2), 1u) << "queue_notify_off";
  c.set_common(22, 2, 2);
  EXPECT_EQ(c.common(24, 2), 0u) << "no such queue";

  Driver d(r.g, r.blk_slot);
  d.enable_pci();
  ASSERT_TRUE(d.negotiate(kFeatures));
  d.set_common(22, 2, 0);
  EXPECT_EQ(d.common(24, 2), 256u);
  d.set_common(26, 2, 1);
  EXPECT_EQ(d.common(26, 2), 1u) << "vector inside the 2-entry table";
  d.set_common(26, 2, 2);
  EXPECT_EQ(d.common(26, 2), 0xffffu) << "unmappable vector reads back NO_VECTOR";
  d.set_common(16, 2, 7);
  EXPECT_EQ(d.common(16, 2), 0xffffu);

  // A misaligned descriptor table: the enable does not take and the device needs a reset.
  d.set_common(32, 4, 0x100008);
  d.set_common(40, 4, 0x200000);
  d.set_common(48, 4, 0x300000);
  d.set_common(28, 2, 1);
  EXPECT_EQ(d.common(28, 2), 0u);
  EXPECT_TRUE(d.status() & virtio::kStatusNeedsReset);
  d.set_status(0);
  EXPECT_EQ(d.status(), 0);
  ASSERT_TRUE(d.negotiate(kFeatures));
  d.set_common(24, 2, 100);  // not a power of two
  d.set_common(32, 8, 0x100000);
  EXPECT_EQ(d.common(32, 8), 0x100000u) << "a 64-bit access to a 64-bit field";
  d.set_common(28, 2, 1);
  EXPECT_EQ(d.common(28, 2), 0u);
  EXPECT_TRUE(d.status() & virtio::kStatusNeedsReset);
  d.set_status(0);
  ASSERT_TRUE(d.negotiate(kFeatures));
  Vq vq = d.setup_queue(0);
  EXPECT_EQ(d.common(28, 2), 1u);
  EXPECT_EQ(d.common(32, 4), vq.desc & 0xffffffff);
  d.set_common(32, 4, 0x5000);  // ignored once the queue is live
  EXPECT_EQ(d.common(32, 4), vq.desc & 0xffffffff);
}

TEST(VirtioPci, MsixDeliveryMaskingAndPendingBits) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures, 1);
  EXPECT_EQ(g.cfg_read(r.blk_slot, d.msix_cap() + 2, 2) & 0x7ff, 1u) << "two vectors: queue + config";

  const uint64_t status = submit_flush(g, d, vqs[0]);
  EXPECT_EQ(g.peek<uint8_t>(status), virtio::kBlkSOk);
  ASSERT_EQ(g.sink.msis.size(), 1u);
  EXPECT_EQ(g.sink.msis[0].address, 0xfee00000u);
  EXPECT_EQ(g.sink.msis[0].data, 0x40u);
  EXPECT_TRUE(g.sink.lines.empty()) << "no INTx while MSI-X is enabled";

  const uint64_t pba = d.bar() + virtio::bar::kMsixPba;
  d.program_vector(0, true);
  submit_flush(g, d, vqs[0]);
  EXPECT_EQ(g.sink.msis.size(), 1u) << "masked vector";
  EXPECT_EQ(g.mmio_read(pba, 8), 1u) << "pending bit";
  d.program_vector(0, false);
  EXPECT_EQ(g.sink.msis.size(), 2u) << "delivered on unmask";
  EXPECT_EQ(g.mmio_read(pba, 8), 0u);

  d.enable_msix(true);  // function mask
  submit_flush(g, d, vqs[0]);
  EXPECT_EQ(g.sink.msis.size(), 2u);
  d.enable_msix(false);
  EXPECT_EQ(g.sink.msis.size(), 3u);

  d.set_common(22, 2, 0);
  d.set_common(26, 2, 0xffff);  // unmap the queue's vector: no interrupt at all
  submit_flush(g, d, vqs[0]);
  EXPECT_EQ(g.sink.msis.size(), 3u);
  EXPECT_EQ(vqs[0].avail_idx, d.used_idx(vqs[0])) << "the requests still completed";
}

TEST(VirtioPci, IntxFallbackClearedByIsrRead) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  auto vqs = d.start(kFeatures, 1, /*msix=*/false);
  submit_flush(g, d, vqs[0]);
  EXPECT_TRUE(g.sink.msis.empty());
  ASSERT_TRUE(g.sink.lines.count(16));
  EXPECT_TRUE(g.sink.lines[16]);
  EXPECT_TRUE(g.cfg_read(r.blk_slot, 0x06, 2) & 0x08) << "PCI interrupt status";
  EXPECT_EQ(d.read_isr(), virtio::kIsrQueue);
  EXPECT_FALSE(g.sink.lines[16]) << "ISR read deasserts";
  EXPECT_FALSE(g.cfg_read(r.blk_slot, 0x06, 2) & 0x08);
  EXPECT_EQ(d.read_isr(), 0);

  g.cfg_write(r.blk_slot, 0x04, 2, g.cfg_read(r.blk_slot, 0x04, 2) | 0x400);  // INTx disable
  submit_flush(g, d, vqs[0]);
  EXPECT_FALSE(g.sink.lines[16]);
  EXPECT_TRUE(g.cfg_read(r.blk_slot, 0x06, 2) & 0x08) << "status still shows the pending interrupt";
  g.cfg_write(r.blk_slot, 0x04, 2, g.cfg_read(r.blk_slot, 0x04, 2) & ~0x400u);
  EXPECT_TRUE(g.sink.lines[16]);
  d.enable_msix();  // switching to MSI-X withdraws INTx
  EXPECT_FALSE(g.sink.lines[16]);
}

// A function that only exposes INTA# for the shared-line test.
struct PinOnly : pci::Function {
  void config_read(uint32_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void config_write(uint32_t, std::span<const uint8_t>) override {}
  void plugged(const pci::Placement& p) override { placement = p; }
  pci::Placement placement;
};

TEST(VirtioPci, SharedIntxLineIsTheOrOfItsFunctions) {
  Guest g;
  std::vector<std::shared_ptr<PinOnly>> fns;
  for (int i = 0; i < 9; ++i) {
    fns.push_back(std::make_shared<PinOnly>());
    g.bus->add(fns.back());
  }
  ASSERT_EQ(fns[0]->placement.intx_gsi, fns[8]->placement.intx_gsi) << "slots 1 and 9 share a line";
  const uint32_t gsi = fns[0]->placement.intx_gsi;
  fns[0]->placement.set_intx(true);
  fns[8]->placement.set_intx(true);
  EXPECT_EQ(g.sink.line_changes.size(), 1u);
  fns[0]->placement.set_intx(false);
  EXPECT_TRUE(g.sink.lines[gsi]) << "slot 9 still drives the line";
  fns[8]->placement.set_intx(false);
  EXPECT_FALSE(g.sink.lines[gsi]);
  EXPECT_EQ(g.sink.line_changes.size(), 2u);
}

TEST(VirtioPci, PciCfgCapabilityWindow) {
  Rig r;
  Guest& g = r.g;
  Driver d(g, r.blk_slot);
  const uint32_t cap = *d.virtio_cap(virtio::kPciCapPciCfg);
  // Works without memory decode: this is the access path for code that cannot map BARs.
  g.cfg_write(r.blk_slot, cap + 4, 1, 0);    // BAR0
  g.cfg_write(r.blk_slot, cap + 12, 4, 2);   // length
  g.cfg_write(r.blk_slot, cap + 8, 4, 18);   // num_queues
  EXPECT_EQ(g.cfg_read(r.blk_slot, cap + 16, 2), 1u);
  g.cfg_write(r.blk_slot, cap + 12, 4, 1);
  g.cfg_write(r.blk_slot, cap + 8, 4, 20);   // device_status
  g.cfg_write(r.blk_slot, cap + 16, 1, virtio::kStatusAcknowledge);
  EXPECT_EQ(r.blk_pci->status(), virtio::kStatusAcknowledge);
  g.cfg_write(r.blk_slot, cap + 8, 4, virtio::bar::kSize);  // outside the BAR: ignored
  g.cfg_write(r.blk_slot, cap + 16, 1, 0);
  EXPECT_EQ(r.blk_pci->status(), virtio::kStatusAcknowledge);
}

}  // namespace
}  // namespace nvhv::test
