// Checkpoint state of the virtio PCI transport. Version 1 is a sequence of records:
//   1 pci     configuration space (BARs, command, MSI-X control, ...) and where nvhv placed BAR0
//   2 common  feature selects, driver features, status, config generation, vectors, ISR
//   3 queue   one per virtqueue, in order (QueueState)
//   4 msix    table and pending bits
//   5 device  the device model's own state, record version = its snapshot_version()
// Requests in flight are not state: every request completes before the vCPU that notified
// returns to the guest, so at a checkpoint each healthy queue has used_idx == last_avail.
#include <fmt/core.h>

#include "devices/virtio/virtio_pci.hpp"
#include "devices/virtio/virtio_spec.hpp"

namespace nvhv::virtio {
namespace {
enum Tag : uint16_t { kPci = 1, kCommon = 2, kQueue = 3, kMsix = 4, kDevice = 5 };
}

void VirtioPci::save(persistence::Encoder& out) const {
  std::lock_guard lock(mu_);
  size_t m = out.begin_record(kPci, 1);
  config_.save(out);
  out.u64(placed_bar_);
  out.end_record(m);

  m = out.begin_record(kCommon, 1);
  out.u32(device_feature_select_);
  out.u32(driver_feature_select_);
  out.u64(driver_features_);
  out.u64(negotiated_);
  out.u8(status_);
  out.u8(config_generation_);
  out.u16(config_vector_);
  out.u16(queue_select_);
  out.u8(isr_);
  out.end_record(m);

  for (const Queue& q : queues_) {
    m = out.begin_record(kQueue, 1);
    save_queue_state(out, q.state());
    out.end_record(m);
  }

  m = out.begin_record(kMsix, 1);
  msix_.save(out);
  out.end_record(m);

  m = out.begin_record(kDevice, static_cast<uint16_t>(device_->snapshot_version()));
  device_->save(out);
  out.end_record(m);
}

void VirtioPci::restore(persistence::Decoder& in, uint32_t) {
  std::lock_guard lock(mu_);
  persistence::RecordReader records(in);
  {
    auto d = records.one(kPci, "pci", 1);
    config_.restore(d);
    const uint64_t placed = d.u64("BAR0 placement");
    if (placed != placed_bar_)
      d.fail("BAR0 placement", fmt::format("was {:#x}, this VM places the device at {:#x}: the PCI layout changed", placed, placed_bar_));
    d.expect_end();
  }
  {
    auto d = records.one(kCommon, "common", 1);
    device_feature_select_ = d.u32("device feature select");
    driver_feature_select_ = d.u32("driver feature select");
    driver_features_ = d.u64("driver features");
    negotiated_ = d.u64("negotiated features");
    status_ = d.u8("device status");
    config_generation_ = d.u8("config generation");
    config_vector_ = d.u16("config MSI-X vector");
    queue_select_ = d.u16("queue select");
    isr_ = d.u8("ISR status");
    d.expect_end();
    if (negotiated_ & ~offered_features())
      d.fail("negotiated features", fmt::format("{:#x} include bits this device does not offer ({:#x})", negotiated_, offered_features()));
    if (config_vector_ != kNoVector && config_vector_ >= msix_.size())
      d.fail("config MSI-X vector", fmt::format("{} is outside the {}-entry table", config_vector_, msix_.size()));
  }
  auto saved_queues = records.all(kQueue, "queue", 1);
  if (saved_queues.size() != queues_.size())
    in.fail("queues", fmt::format("{} saved, this device has {}", saved_queues.size(), queues_.size()));
  for (size_t i = 0; i < queues_.size(); ++i) {
    auto& d = saved_queues[i];
    const QueueState s = load_queue_state(d);
    d.expect_end();
    std::string why;
    if (s.msix_vector != kNoVector && s.msix_vector >= msix_.size())
      d.fail("queue MSI-X vector", fmt::format("{} is outside the {}-entry table", s.msix_vector, msix_.size()));
    if (s.ready && !s.broken && s.used_idx != s.last_avail)
      d.fail("queue indices", fmt::format("used {} != available {}: saved with requests in flight", s.used_idx, s.last_avail));
    if (!queues_[i].restore(s, dma_, why)) d.fail("queue", why);
    queues_[i].set_features(negotiated_);
  }
  {
    auto d = records.one(kMsix, "msix", 1);
    msix_.restore(d);
    d.expect_end();
  }
  {
    uint16_t version = 0;
    auto d = records.one(kDevice, "device", static_cast<uint16_t>(device_->snapshot_version()), &version);
    device_->restore(d, version);
    d.expect_end();
  }
  // Derived state: MSI-X enable/mask from the restored capability, and the INTx level, which
  // is driven again so the bus's line state matches (the irqchip was restored before us).
  const uint16_t control = config_.u16(msix_cap_ + 2);
  msix_.set_control(control & pci::kMsixEnable, control & pci::kMsixFunctionMask);
  intx_level_ = false;
  update_intx();
}

}  // namespace nvhv::virtio
