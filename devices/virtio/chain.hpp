#pragma once
// One descriptor chain popped from a virtqueue: the device-readable buffers followed by the
// device-writable ones, each already checked to lie inside guest RAM. Devices read and write
// them as spans (or through the gather/scatter helpers), then hand the chain back with
// Queue::push_used.
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

namespace nvhv::virtio {

struct Buffer {
  uint64_t gpa;
  uint8_t* host;
  uint32_t len;
  std::span<uint8_t> bytes() const { return {host, len}; }
};

class Chain {
 public:
  uint16_t head() const { return head_; }
  std::span<const Buffer> readable() const { return std::span(buffers_).first(first_writable_); }
  std::span<const Buffer> writable() const { return std::span(buffers_).subspan(first_writable_); }
  uint64_t readable_bytes() const { return readable_bytes_; }
  uint64_t writable_bytes() const { return writable_bytes_; }

  // Copies readable bytes starting at `offset` (across buffer boundaries) into `out`; returns
  // how many were available.
  size_t read(uint64_t offset, std::span<uint8_t> out) const;
  // Copies `in` into the writable buffers starting at `offset`; returns how many fitted.
  size_t write(uint64_t offset, std::span<const uint8_t> in) const;
  // Appends iovecs for [offset, offset + len) of the readable or writable bytes; returns the
  // bytes covered (less than len when the chain is shorter).
  uint64_t iovecs(bool writable, uint64_t offset, uint64_t len, std::vector<iovec>& out) const;

 private:
  friend class Queue;
  void clear(uint16_t head) {
    head_ = head;
    buffers_.clear();
    first_writable_ = 0;
    readable_bytes_ = writable_bytes_ = 0;
  }

  uint16_t head_ = 0;
  std::vector<Buffer> buffers_;
  size_t first_writable_ = 0;
  uint64_t readable_bytes_ = 0;
  uint64_t writable_bytes_ = 0;
};

}  // namespace nvhv::virtio
