#pragma once
// A split virtqueue (virtio 1.x, 2.7) as the device side drives it. Everything it reads from
// guest RAM is untrusted: ring indices, descriptor addresses, lengths and links are checked
// before use, and a violation puts the queue in a broken state (the transport then sets
// DEVICE_NEEDS_RESET) instead of touching memory outside guest RAM.
//
// Not thread-safe: the transport's device lock covers every call.
#include <cstdint>
#include <string>

#include "devices/virtio/chain.hpp"
#include "devices/virtio/guest_dma.hpp"
#include "persistence/codec.hpp"

namespace nvhv::virtio {

// Everything a checkpoint needs to continue the queue where it stopped.
struct QueueState {
  uint16_t size = 0;
  bool ready = false;
  uint16_t msix_vector = 0xffff;
  uint64_t desc_addr = 0;
  uint64_t driver_addr = 0;  // available ring
  uint64_t device_addr = 0;  // used ring
  uint16_t last_avail = 0;   // next available ring entry the device will consume
  uint16_t used_idx = 0;     // the used ring's idx as the device last published it
  uint16_t signalled_used = 0;  // used_idx at the last notification decision
  bool signalled_valid = false;
  bool broken = false;
  bool operator==(const QueueState&) const = default;
};

// The checkpoint encoding of QueueState (a fixed sequence of little-endian fields).
void save_queue_state(persistence::Encoder& out, const QueueState& s);
QueueState load_queue_state(persistence::Decoder& in);

class Queue {
 public:
  explicit Queue(uint16_t max_size);

  uint16_t max_size() const { return max_size_; }
  const QueueState& state() const { return s_; }
  // Driver configuration, honoured only while the queue is not ready.
  void set_size(uint16_t size);
  void set_desc_addr(uint64_t a);
  void set_driver_addr(uint64_t a);
  void set_device_addr(uint64_t a);
  void set_msix_vector(uint16_t v) { s_.msix_vector = v; }
  // VIRTIO_RING_F_INDIRECT_DESC / VIRTIO_RING_F_EVENT_IDX as negotiated.
  void set_features(uint64_t negotiated);

  // queue_enable = 1: checks size (power of two, <= max) and that each ring part is aligned
  // and wholly inside guest RAM. On failure returns false with `why` and stays disabled.
  bool enable(const GuestDma& dma, std::string& why);
  // Back to the reset state: disabled, maximum size, no vector.
  void reset();

  enum class Pop { chain, empty, error };
  // Takes the next available chain into `out`. `empty` also publishes avail_event (EVENT_IDX)
  // and re-checks, so a buffer added meanwhile is never left without a notification.
  Pop pop(Chain& out);
  // Returns a chain with `written` bytes (clamped to its writable size) in the used ring.
  void push_used(const Chain& chain, uint32_t written);
  // Whether the driver wants a used-buffer notification for what was pushed since the last
  // call (flags or used_event, spec 2.7.10).
  bool should_notify();

  void fail(std::string why);
  bool broken() const { return s_.broken; }
  const std::string& fault() const { return fault_; }

  // Reinstates saved state; false with `why` when it cannot describe a queue in this VM.
  bool restore(const QueueState& saved, const GuestDma& dma, std::string& why);

 private:
  bool map_rings(const GuestDma& dma, std::string& why);
  bool walk(uint16_t head, Chain& out);
  uint16_t avail_idx() const;

  uint16_t max_size_;
  QueueState s_;
  const GuestDma* dma_ = nullptr;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  bool indirect_ = false;
  bool event_idx_ = false;
  // Chains pushed since the last should_notify(). Zero whenever the device is at rest (and so
  // at every checkpoint), hence not saved.
  uint32_t pushed_ = 0;
  std::string fault_;
};

}  // namespace nvhv::virtio
