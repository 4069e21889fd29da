#include "devices/virtio/queue.hpp"

#include <fmt/core.h>

#include <atomic>
#include <cstring>
#include <limits>

#include "devices/virtio/virtio_spec.hpp"

namespace nvhv::virtio {
namespace {

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == kDescSize);

// Ring indices are shared with vCPUs running the driver concurrently: they are read and
// written as single aligned accesses (enable() checks the alignment) with explicit fences
// where the spec orders them.
uint16_t load16(const uint8_t* p) { return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_RELAXED); }
void store16(uint8_t* p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELAXED); }
void store32(uint8_t* p, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t*>(p), v, __ATOMIC_RELAXED); }

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Queue::Queue(uint16_t max_size) : max_size_(max_size) {
  if (!power_of_two(max_size) || max_size > kMaxQueueSize) throw std::invalid_argument("virtqueue maximum size must be a power of two <= 32768");
  reset();
}

void Queue::reset() {
  s_ = QueueState{};
  s_.size = max_size_;
  s_.msix_vector = kNoVector;
  desc_ = avail_ = used_ = nullptr;
  dma_ = nullptr;
  pushed_ = 0;
  fault_.clear();
}

void Queue::set_size(uint16_t size) {
  if (!s_.ready) s_.size = size;
}
void Queue::set_desc_addr(uint64_t a) {
  if (!s_.ready) s_.desc_addr = a;
}
void Queue::set_driver_addr(uint64_t a) {
  if (!s_.ready) s_.driver_addr = a;
}
void Queue::set_device_addr(uint64_t a) {
  if (!s_.ready) s_.device_addr = a;
}

void Queue::set_features(uint64_t negotiated) {
  indirect_ = negotiated & kFRingIndirectDesc;
  event_idx_ = negotiated & kFRingEventIdx;
}

bool Queue::map_rings(const GuestDma& dma, std::string& why) {
  const uint64_t n = s_.size;
  struct Part {
    const char* name;
    uint64_t gpa;
    uint64_t align;
    uint64_t len;
    uint8_t** host;
  } parts[] = {
      {"descriptor table", s_.desc_addr, 16, kDescSize * n, &desc_},
      {"available ring", s_.driver_addr, 2, 6 + 2 * n, &avail_},
      {"used ring", s_.device_addr, 4, 6 + 8 * n, &used_},
  };
  for (const Part& p : parts) {
    uint8_t* host = dma.range(p.gpa, p.len);
    if (p.gpa % p.align != 0 || !host || reinterpret_cast<uintptr_t>(host) % p.align != 0) {
      why = fmt::format("{} at {:#x} (+{:#x}) is misaligned or outside guest RAM", p.name, p.gpa, p.len);
      desc_ = avail_ = used_ = nullptr;
      return false;
    }
    *p.host = host;
  }
  dma_ = &dma;
  return true;
}

bool Queue::enable(const GuestDma& dma, std::string& why) {
  if (s_.ready) return true;
  if (!power_of_two(s_.size) || s_.size > max_size_) {
    why = fmt::format("queue size {} is not a power of two <= {}", s_.size, max_size_);
    return false;
  }
  if (!map_rings(dma, why)) return false;
  s_.ready = true;
  s_.last_avail = s_.used_idx = s_.signalled_used = 0;
  s_.signalled_valid = false;
  s_.broken = false;
  fault_.clear();
  return true;
}

bool Queue::restore(const QueueState& saved, const GuestDma& dma, std::string& why) {
  reset();
  if (saved.ready && (!power_of_two(saved.size) || saved.size > max_size_)) {
    why = fmt::format("saved queue size {} is not a power of two <= {}", saved.size, max_size_);
    return false;
  }
  s_ = saved;
  if (s_.ready && !map_rings(dma, why)) {
    reset();
    return false;
  }
  if (s_.broken) fault_ = "broken before the checkpoint";
  return true;
}

void Queue::fail(std::string why) {
  if (s_.broken) return;
  s_.broken = true;
  fault_ = std::move(why);
}

uint16_t Queue::avail_idx() const { return load16(avail_ + 2); }

Queue::Pop Queue::pop(Chain& out) {
  if (s_.broken) return Pop::error;
  if (!s_.ready) return Pop::empty;
  uint16_t pending = static_cast<uint16_t>(avail_idx() - s_.last_avail);
  if (pending == 0 && event_idx_) {
    // Ask for a notification when the driver publishes entry last_avail, then look again:
    // the driver may have added one before it could see this avail_event.
    const uint64_t off = 4 + 8 * uint64_t{s_.size};
    store16(used_ + off, s_.last_avail);
    dma_->wrote(s_.device_addr + off, 2);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    pending = static_cast<uint16_t>(avail_idx() - s_.last_avail);
  }
  if (pending == 0) return Pop::empty;
  if (pending > s_.size) {
    fail(fmt::format("available idx is {} entries ahead of the device, more than the queue size {}", pending, s_.size));
    return Pop::error;
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // ring entry and descriptors after idx
  const uint16_t head = load16(avail_ + 4 + 2 * (s_.last_avail % s_.size));
  if (head >= s_.size) {
    fail(fmt::format("available ring entry {} names descriptor {} past the queue size {}", s_.last_avail, head, s_.size));
    return Pop::error;
  }
  if (!walk(head, out)) return Pop::error;
  ++s_.last_avail;
  return Pop::chain;
}

bool Queue::walk(uint16_t head, Chain& out) {
  out.clear(head);
  const uint8_t* table = desc_;
  uint32_t table_size = s_.size;
  bool in_indirect = false;
  bool seen_writable = false;
  uint32_t idx = head;
  uint64_t total = 0;
  // Every descriptor visited counts, including the one pointing at an indirect table, so a
  // loop (direct or inside the table) ends at the limit the spec sets: the queue size.
  for (uint32_t count = 1;; ++count) {
    if (count > s_.size) {
      fail(fmt::format("chain at head {} is longer than the queue size {} (a loop?)", head, s_.size));
      return false;
    }
    Desc d;
    std::memcpy(&d, table + uint64_t{kDescSize} * idx, sizeof d);
    if (d.flags & kDescFIndirect) {
      const char* problem = !indirect_ ? "without VIRTIO_RING_F_INDIRECT_DESC negotiated"
                            : in_indirect ? "inside an indirect table"
                            : (d.flags & kDescFNext) ? "with NEXT also set"
                            : (d.len == 0 || d.len % kDescSize) ? "with a length that is not a non-zero multiple of 16"
                                                                : nullptr;
      if (problem) {
        fail(fmt::format("chain at head {}: indirect descriptor {}", head, problem));
        return false;
      }
      const uint8_t* t = dma_->range(d.addr, d.len);
      if (!t) {
        fail(fmt::format("chain at head {}: indirect table {:#x}+{:#x} is outside guest RAM", head, d.addr, d.len));
        return false;
      }
      table = t;
      table_size = d.len / kDescSize;
      in_indirect = true;
      idx = 0;
      continue;
    }
    uint8_t* host = dma_->range(d.addr, d.len);
    if (!host) {
      fail(fmt::format("chain at head {}: buffer {:#x}+{:#x} is outside guest RAM", head, d.addr, d.len));
      return false;
    }
    const bool writable = d.flags & kDescFWrite;
    if (!writable && seen_writable) {
      fail(fmt::format("chain at head {}: device-readable buffer after a device-writable one", head));
      return false;
    }
    total += d.len;
    if (total > std::numeric_limits<uint32_t>::max()) {
      fail(fmt::format("chain at head {} holds more than 4 GiB", head));
      return false;
    }
    seen_writable = writable;
    out.buffers_.push_back(Buffer{d.addr, host, d.len});
    if (writable) {
      out.writable_bytes_ += d.len;
    } else {
      out.readable_bytes_ += d.len;
      ++out.first_writable_;
    }
    if (!(d.flags & kDescFNext)) return true;
    if (d.next >= table_size) {
      fail(fmt::format("chain at head {}: next index {} is past the table of {}", head, d.next, table_size));
      return false;
    }
    idx = d.next;
  }
}

void Queue::push_used(const Chain& chain, uint32_t written) {
  if (!s_.ready || s_.broken) return;
  if (written > chain.writable_bytes()) written = static_cast<uint32_t>(chain.writable_bytes());
  const uint64_t off = 4 + 8 * uint64_t{static_cast<uint16_t>(s_.used_idx % s_.size)};
  store32(used_ + off, chain.head());
  store32(used_ + off + 4, written);
  dma_->wrote(s_.device_addr + off, 8);
  uint64_t left = written;
  for (const Buffer& b : chain.writable()) {
    if (left == 0) break;
    const uint64_t n = std::min<uint64_t>(left, b.len);
    dma_->wrote(b.gpa, n);
    left -= n;
  }
  // The element and the data it describes must be visible before the new idx.
  std::atomic_thread_fence(std::memory_order_release);
  ++s_.used_idx;
  ++pushed_;
  store16(used_ + 2, s_.used_idx);
  dma_->wrote(s_.device_addr + 2, 2);
}

bool Queue::should_notify() {
  if (!s_.ready || s_.broken || pushed_ == 0) return false;  // nothing new: never interrupt
  pushed_ = 0;
  // The used idx store must be visible before reading the driver's suppression state, or
  // a driver re-enabling notifications in between would miss this one.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old = s_.signalled_used;
  const uint16_t now = s_.used_idx;
  const bool valid = s_.signalled_valid;
  s_.signalled_used = now;
  s_.signalled_valid = true;
  if (event_idx_) {
    const uint16_t used_event = load16(avail_ + 4 + 2 * uint64_t{s_.size});
    // vring_need_event: notify when used_event lies in (old, now].
    return !valid || static_cast<uint16_t>(now - used_event - 1) < static_cast<uint16_t>(now - old);
  }
  return !(load16(avail_) & kAvailFNoInterrupt);
}

}  // namespace nvhv::virtio

namespace nvhv::virtio {

void save_queue_state(persistence::Encoder& out, const QueueState& s) {
  out.u16(s.size);
  out.boolean(s.ready);
  out.u16(s.msix_vector);
  out.u64(s.desc_addr);
  out.u64(s.driver_addr);
  out.u64(s.device_addr);
  out.u16(s.last_avail);
  out.u16(s.used_idx);
  out.u16(s.signalled_used);
  out.boolean(s.signalled_valid);
  out.boolean(s.broken);
}

QueueState load_queue_state(persistence::Decoder& in) {
  QueueState s;
  s.size = in.u16("queue size");
  s.ready = in.boolean("queue ready");
  s.msix_vector = in.u16("queue MSI-X vector");
  s.desc_addr = in.u64("queue descriptor table address");
  s.driver_addr = in.u64("queue available ring address");
  s.device_addr = in.u64("queue used ring address");
  s.last_avail = in.u16("queue last available index");
  s.used_idx = in.u16("queue used index");
  s.signalled_used = in.u16("queue signalled used index");
  s.signalled_valid = in.boolean("queue signalled valid");
  s.broken = in.boolean("queue broken");
  return s;
}

}  // namespace nvhv::virtio
