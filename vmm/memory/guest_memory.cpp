#include "vmm/memory/guest_memory.hpp"

#include <fmt/core.h>

#include "vmm/x86/layout.hpp"

namespace nvhv {

GuestMemory::GuestMemory(uint8_t* host, uint64_t size) : host_(host), size_(size) {
  uint64_t low = std::min(size, layout::kPciHoleStart);
  regions_.push_back({0, low, host, 0});
  if (size > low) regions_.push_back({layout::kFourGiB, size - low, host + low, low});
}

uint8_t* GuestMemory::host_range(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    // Written to avoid overflow with hostile gpa/len values near 2^64.
    if (gpa >= r.guest_phys && gpa - r.guest_phys < r.size && len <= r.size - (gpa - r.guest_phys))
      return r.host + (gpa - r.guest_phys);
  }
  return nullptr;
}

uint8_t* GuestMemory::checked_range(uint64_t gpa, uint64_t len) const {
  uint8_t* p = host_range(gpa, len);
  if (!p) throw std::out_of_range(fmt::format("guest range {:#x}+{:#x} is outside guest RAM", gpa, len));
  return p;
}

std::vector<E820Entry> GuestMemory::e820() const {
  std::vector<E820Entry> map;
  map.push_back({0, layout::kEbdaStart, 1});
  map.push_back({layout::kEbdaStart, 0xa0000 - layout::kEbdaStart, 2});
  map.push_back({layout::kBiosStart, layout::kHighMemory - layout::kBiosStart, 2});
  const auto& low = regions_[0];
  if (low.size > layout::kHighMemory) map.push_back({layout::kHighMemory, low.size - layout::kHighMemory, 1});
  if (regions_.size() > 1) map.push_back({regions_[1].guest_phys, regions_[1].size, 1});
  return map;
}

}  // namespace nvhv
