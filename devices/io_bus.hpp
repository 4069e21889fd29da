#pragma once
// Dispatches port I/O and MMIO exits to the device owning the address.
// Devices are registered before the vCPUs start; lookups afterwards take no lock.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace nvhv {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was registered at; data.size() is 1, 2, 4 or 8.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class IoBus {
 public:
  explicit IoBus(std::string name) : name_(std::move(name)) {}
  // Throws std::invalid_argument when the range overlaps one already registered.
  void add(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device);
  // Return false when no device claims the address (reads then see all-ones).
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t base;
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  const Range* find(uint64_t address, uint64_t size) const;
  std::string name_;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

}  // namespace nvhv
