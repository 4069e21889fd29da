#pragma once
// The virtio 1.x PCI transport, modern interface only (spec 4.1): one 64-bit memory BAR
// holding common configuration, ISR, device configuration, notification addresses, and the
// MSI-X table and PBA; vendor capabilities describing them; MSI-X (one vector per queue plus
// one for configuration changes) with INTx fallback.
//
// Queue notifications arrive as MMIO writes to the notify area. The device processes the
// queue right there, on the vCPU thread that notified, to completion: when the vCPU returns
// to the guest no request is in flight, so a checkpoint (taken with vCPUs paused) never sees
// a half-done one. The cost: a slow request (fdatasync) stalls that vCPU.
//
// BAR0 layout (offsets within the BAR):
//   0x0000 common configuration (56 bytes)   0x3000 notify, 4 bytes per queue
//   0x1000 ISR status (1 byte)               0x4000 MSI-X table
//   0x2000 device configuration              0x5000 MSI-X PBA
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/pci/config_space.hpp"
#include "devices/pci/interrupt_sink.hpp"
#include "devices/pci/pci_function.hpp"
#include "devices/virtio/chain.hpp"
#include "devices/virtio/device.hpp"
#include "devices/virtio/guest_dma.hpp"
#include "devices/virtio/msix.hpp"
#include "devices/virtio/queue.hpp"
#include "persistence/snapshottable.hpp"

namespace nvhv::virtio {

namespace bar {
inline constexpr uint64_t kCommon = 0x0000;
inline constexpr uint64_t kCommonSize = 0x38;
inline constexpr uint64_t kIsr = 0x1000;
inline constexpr uint64_t kDevice = 0x2000;
inline constexpr uint64_t kDeviceMax = 0x1000;
inline constexpr uint64_t kNotify = 0x3000;
inline constexpr uint32_t kNotifyMultiplier = 4;
inline constexpr uint64_t kMsixTable = 0x4000;
inline constexpr uint64_t kMsixPba = 0x5000;
inline constexpr uint64_t kSize = 0x8000;
}  // namespace bar

class VirtioPci : public pci::Function, public persistence::Snapshottable, private DeviceHost {
 public:
  // `dma`'s observer sees every store the device makes into guest RAM; `irq` must outlive
  // the transport.
  VirtioPci(std::shared_ptr<Device> device, GuestDma dma, pci::InterruptSink& irq);

  // pci::Function
  void config_read(uint32_t offset, std::span<uint8_t> data) override;
  void config_write(uint32_t offset, std::span<const uint8_t> data) override;
  std::vector<pci::BarRequest> bar_requests() const override { return {{0, bar::kSize}}; }
  void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override;
  void plugged(const pci::Placement& placement) override;

  // Checkpoint support. quiesce() stops host-initiated work (console input) from touching
  // guest RAM until resume(); vCPU-initiated work is already stopped by pausing the vCPUs.
  void quiesce();
  void resume();

  Device& device() { return *device_; }
  uint64_t bar_address() const { return placed_bar_; }
  uint8_t status() const;

  std::string snapshot_id() const override { return device_->snapshot_id(); }
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;

 private:
  // DeviceHost
  std::mutex& lock() override { return mu_; }
  Queue* usable_queue(uint32_t index) override;
  void queue_done(uint32_t index) override;

  uint64_t offered_features() const;
  bool usable() const;
  bool decoding() const;
  void region_read(uint64_t offset, std::span<uint8_t> data);
  void region_write(uint64_t offset, std::span<const uint8_t> data);
  void common_read(uint64_t offset, std::span<uint8_t> data) const;
  void common_write(uint64_t offset, uint64_t value, size_t size);
  void write_status(uint8_t value);
  void reset_device();
  void kick(uint32_t index);
  void kick_all();
  void needs_reset(const std::string& why);
  void signal_queue(uint32_t index);
  void signal_config();
  void update_intx();
  void msix_control_changed();
  void pci_cfg_access(bool write);
  Queue* selected_queue();

  std::shared_ptr<Device> device_;
  GuestDma dma_;
  pci::InterruptSink& irq_;
  mutable std::mutex mu_;
  pci::ConfigSpace config_;
  uint32_t msix_cap_ = 0;
  uint32_t pci_cfg_cap_ = 0;
  MsixTable msix_;
  std::vector<Queue> queues_;
  pci::Placement placement_;
  uint64_t placed_bar_ = 0;

  // Common configuration.
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint64_t driver_features_ = 0;
  uint64_t negotiated_ = 0;  // driver_features_ once FEATURES_OK was accepted
  uint8_t status_ = 0;
  uint8_t config_generation_ = 0;
  uint16_t config_vector_ = 0xffff;
  uint16_t queue_select_ = 0;
  uint8_t isr_ = 0;

  bool intx_level_ = false;
  bool quiesced_ = false;
  unsigned faults_logged_ = 0;
};

}  // namespace nvhv::virtio
