#include "devices/virtio/chain.hpp"

#include <algorithm>
#include <cstring>

namespace nvhv::virtio {
namespace {

// Calls fn(host, n) for each piece of [offset, offset + len) across `buffers`.
template <typename Fn>
uint64_t walk(std::span<const Buffer> buffers, uint64_t offset, uint64_t len, Fn fn) {
  uint64_t done = 0;
  for (const Buffer& b : buffers) {
    if (done == len) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.len - offset, len - done);
    fn(b.host + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

}  // namespace

size_t Chain::read(uint64_t offset, std::span<uint8_t> out) const {
  uint8_t* dst = out.data();
  return walk(readable(), offset, out.size(), [&](uint8_t* p, uint64_t n) {
    std::memcpy(dst, p, n);
    dst += n;
  });
}

size_t Chain::write(uint64_t offset, std::span<const uint8_t> in) const {
  const uint8_t* src = in.data();
  return walk(writable(), offset, in.size(), [&](uint8_t* p, uint64_t n) {
    std::memcpy(p, src, n);
    src += n;
  });
}

uint64_t Chain::iovecs(bool writable_part, uint64_t offset, uint64_t len, std::vector<iovec>& out) const {
  return walk(writable_part ? writable() : readable(), offset, len, [&](uint8_t* p, uint64_t n) {
    out.push_back(iovec{p, static_cast<size_t>(n)});
  });
}

}  // namespace nvhv::virtio
