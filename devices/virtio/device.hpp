#pragma once
// A virtio device model (blk, console) as its transport drives it. The transport owns the
// common configuration, the virtqueues and interrupts; the device owns its configuration
// space layout and what a request means.
//
// Threading: one lock per device instance, owned by the transport (DeviceHost::lock()). The
// transport holds it around every call into the device. Work that starts on the host side
// (console input) takes it itself, then uses usable_queue()/queue_done().
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/virtio/queue.hpp"
#include "persistence/snapshottable.hpp"

namespace nvhv::virtio {

class DeviceHost {
 public:
  virtual ~DeviceHost() = default;
  virtual std::mutex& lock() = 0;
  // With the lock held: the queue if the driver has it enabled and the device may use it now
  // (DRIVER_OK, no NEEDS_RESET, not quiesced for a checkpoint), else nullptr.
  virtual Queue* usable_queue(uint32_t index) = 0;
  // With the lock held, after pushing used buffers from outside Device::process(): raises
  // the used-buffer interrupt if the driver wants one, or NEEDS_RESET if the queue broke.
  virtual void queue_done(uint32_t index) = 0;
};

class Device : public persistence::Snapshottable {
 public:
  explicit Device(std::string id) : id_(std::move(id)) {}

  virtual uint32_t device_type() const = 0;  // virtio device ID (2 block, 3 console)
  virtual uint32_t pci_class() const = 0;
  // Device-specific feature bits; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX.
  virtual uint64_t features() const = 0;
  // Maximum size of each virtqueue (powers of two); their number is the queue count.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  virtual uint32_t config_size() const = 0;
  // offset + data.size() <= config_size().
  virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint32_t, std::span<const uint8_t>) {}
  // The driver set DRIVER_OK having accepted `features`.
  virtual void activate(uint64_t) {}
  // The driver reset the device (status 0): drop per-session state.
  virtual void reset() {}
  // Queue `index` may have new buffers: consume them with queue.pop(), complete each with
  // queue.push_used() before returning (nvhv keeps no request in flight across an exit).
  // The transport sends the interrupt afterwards.
  virtual void process(uint32_t index, Queue& queue) = 0;

  void attach(DeviceHost* host) { host_ = host; }

  std::string snapshot_id() const override { return id_; }

 protected:
  DeviceHost* host() const { return host_; }

 private:
  std::string id_;
  DeviceHost* host_ = nullptr;
};

}  // namespace nvhv::virtio
