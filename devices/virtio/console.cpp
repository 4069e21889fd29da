#include "devices/virtio/console.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "devices/virtio/virtio_spec.hpp"

namespace nvhv::virtio {

VirtioConsole::VirtioConsole(std::string id, uint16_t queue_size) : Device(std::move(id)), queue_size_(queue_size) {
  if (queue_size < 2 || (queue_size & (queue_size - 1)) != 0) throw std::invalid_argument("virtio-console queue size must be a power of two >= 2");
}

uint32_t VirtioConsole::device_type() const { return kIdConsole; }

void VirtioConsole::set_output(Output output) {
  if (!host()) {
    output_ = std::move(output);
    return;
  }
  std::lock_guard lock(host()->lock());
  output_ = std::move(output);
}

void VirtioConsole::read_config(uint32_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

size_t VirtioConsole::inject_input(std::span<const uint8_t> bytes) {
  if (!host()) throw std::logic_error("virtio-console: inject_input before the device is attached to a transport");
  std::lock_guard lock(host()->lock());
  const size_t accepted = std::min(bytes.size(), kMaxPendingInput - pending_.size());
  pending_.insert(pending_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
  if (Queue* q = host()->usable_queue(kReceiveQueue)) {
    deliver(*q);
    host()->queue_done(kReceiveQueue);
  }
  return accepted;
}

size_t VirtioConsole::pending_input() const {
  if (!host()) return pending_.size();
  std::lock_guard lock(host()->lock());
  return pending_.size();
}

void VirtioConsole::process(uint32_t index, Queue& queue) {
  if (index == kReceiveQueue) {
    deliver(queue);
    return;
  }
  while (queue.pop(chain_) == Queue::Pop::chain) {
    // A byte stream: each readable buffer goes out as it is, writable ones are ignored.
    if (output_)
      for (const Buffer& b : chain_.readable()) output_(b.bytes());
    queue.push_used(chain_, 0);
  }
}

void VirtioConsole::deliver(Queue& queue) {
  while (!pending_.empty() && queue.pop(chain_) == Queue::Pop::chain) {
    if (chain_.writable_bytes() == 0) {
      queue.fail("console receive buffer with no device-writable space");
      return;
    }
    const uint64_t n = std::min<uint64_t>(pending_.size(), chain_.writable_bytes());
    uint64_t done = 0;
    uint8_t chunk[256];
    while (done < n) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(sizeof chunk, n - done));
      std::copy_n(pending_.begin(), k, chunk);
      chain_.write(done, std::span(chunk, k));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(k));
      done += k;
    }
    queue.push_used(chain_, static_cast<uint32_t>(n));
  }
}

void VirtioConsole::save(persistence::Encoder& out) const {
  out.u32(static_cast<uint32_t>(pending_.size()));
  for (uint8_t b : pending_) out.u8(b);
}

void VirtioConsole::restore(persistence::Decoder& in, uint32_t) {
  const uint32_t n = in.u32("console pending input length");
  if (n > kMaxPendingInput) in.fail("console pending input length", fmt::format("{} exceeds the {}-byte buffer", n, kMaxPendingInput));
  std::deque<uint8_t> pending;
  for (uint32_t i = 0; i < n; ++i) pending.push_back(in.u8("console pending input"));
  pending_ = std::move(pending);
}

}  // namespace nvhv::virtio
