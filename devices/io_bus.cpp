#include "devices/io_bus.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace nvhv {

void IoBus::add(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device) {
  if (length == 0 || base + length < base) throw std::invalid_argument(fmt::format("{} bus: bad range {:#x}+{:#x}", name_, base, length));
  for (const auto& r : ranges_)
    if (base < r.base + r.length && r.base < base + length)
      throw std::invalid_argument(fmt::format("{} bus: {:#x}+{:#x} overlaps {:#x}+{:#x}", name_, base, length, r.base, r.length));
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base, [](const Range& r, uint64_t b) { return r.base < b; });
  ranges_.insert(it, Range{base, length, std::move(device)});
}

const IoBus::Range* IoBus::find(uint64_t address, uint64_t size) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address, [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t off = address - it->base;
  if (off >= it->length || size > it->length - off) return nullptr;
  return &*it;
}

bool IoBus::read(uint64_t address, std::span<uint8_t> data) const {
  const Range* r = find(address, data.size());
  if (!r) {
    std::memset(data.data(), 0xff, data.size());
    return false;
  }
  r->device->read(address - r->base, data);
  return true;
}

bool IoBus::write(uint64_t address, std::span<const uint8_t> data) const {
  const Range* r = find(address, data.size());
  if (!r) return false;
  r->device->write(address - r->base, data);
  return true;
}

}  // namespace nvhv
