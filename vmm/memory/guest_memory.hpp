#pragma once
// Guest RAM: one contiguous host range split around the PCI hole into guest-physical regions.
// Every guest-supplied address is checked against the regions before the host touches it.
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <vector>

namespace nvhv {

struct MemoryRegion {
  uint64_t guest_phys;
  uint64_t size;
  uint8_t* host;
  uint64_t offset;  // offset of the region within the contiguous host range
};

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // 1 RAM, 2 reserved, 12 persistent memory (legacy)
};

class GuestMemory {
 public:
  GuestMemory(uint8_t* host, uint64_t size);

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t size() const { return size_; }
  uint8_t* host_base() const { return host_; }

  // Host pointer for [gpa, gpa+len) when the whole range is inside one region, else nullptr.
  uint8_t* host_range(uint64_t gpa, uint64_t len) const;
  // As host_range, but throws std::out_of_range naming the range: for the VMM's own writes.
  uint8_t* checked_range(uint64_t gpa, uint64_t len) const;
  void write(uint64_t gpa, std::span<const uint8_t> bytes) const { std::memcpy(checked_range(gpa, bytes.size()), bytes.data(), bytes.size()); }
  template <typename T>
  void write_object(uint64_t gpa, const T& value) const { std::memcpy(checked_range(gpa, sizeof(T)), &value, sizeof(T)); }

  // The firmware-style map handed to guests (PVH memmap, Linux e820).
  std::vector<E820Entry> e820() const;

 private:
  uint8_t* host_;
  uint64_t size_;
  std::vector<MemoryRegion> regions_;
};

}  // namespace nvhv
