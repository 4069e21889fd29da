#pragma once
// The interface a device implements to take part in checkpoints. Each device writes its own
// state with the shared Encoder (ideally as records, so it can evolve) and gets it back with
// the version it was saved with.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "persistence/codec.hpp"

namespace nvhv::persistence {

struct DeviceState;

class Snapshottable {
 public:
  virtual ~Snapshottable() = default;
  // Stable name of this device instance in saved state, e.g. "serial0".
  virtual std::string snapshot_id() const = 0;
  // Version of the layout save() writes.
  virtual uint32_t snapshot_version() const = 0;
  // Runs on the power-fail path with vCPUs stopped: no blocking, no large allocations.
  virtual void save(Encoder& out) const = 0;
  // `version` is what was saved, never newer than snapshot_version().
  virtual void restore(Decoder& in, uint32_t version) = 0;
};

// Saves into `out`, reusing its buffers: no allocation once they have grown to size.
void save_device(const Snapshottable& device, DeviceState& out);
void save_devices(std::span<const Snapshottable* const> devices, std::vector<DeviceState>& out);

// Restores every live device from the saved entry with its id. Throws DecodeError for a saved
// device with no live one or the reverse, a duplicate id, a version newer than the device
// supports, or data the device did not fully consume.
void restore_devices(std::span<Snapshottable* const> devices, const std::vector<DeviceState>& saved);

}  // namespace nvhv::persistence
