#pragma once
// How virtio devices reach guest RAM: every address comes from the guest and is checked by
// GuestMemory::host_range before use. Stores the VMM makes into guest RAM are invisible to
// KVM's dirty log, so each one is reported to an observer: on a persistent VM it must reach
// the medium before a checkpoint commits (see docs/devices.md, "Saved state").
#include <cstdint>
#include <cstring>
#include <functional>

#include "vmm/memory/guest_memory.hpp"

namespace nvhv::virtio {

class GuestDma {
 public:
  using WriteObserver = std::function<void(uint64_t gpa, uint64_t len)>;

  explicit GuestDma(const GuestMemory& memory, WriteObserver on_write = {})
      : memory_(&memory), on_write_(std::move(on_write)) {}

  // Host pointer for [gpa, gpa + len) inside one RAM region, or nullptr.
  uint8_t* range(uint64_t gpa, uint64_t len) const { return memory_->host_range(gpa, len); }
  // The device stored into [gpa, gpa + len).
  void wrote(uint64_t gpa, uint64_t len) const {
    if (on_write_ && len) on_write_(gpa, len);
  }

 private:
  const GuestMemory* memory_;
  WriteObserver on_write_;
};

}  // namespace nvhv::virtio
