#include "persistence/snapshottable.hpp"

#include <fmt/core.h>

#include "persistence/machine_state.hpp"

namespace nvhv::persistence {

void save_device(const Snapshottable& device, DeviceState& out) {
  out.id = device.snapshot_id();
  out.version = device.snapshot_version();
  out.data.clear();
  Encoder enc(out.data);
  device.save(enc);
}

void save_devices(std::span<const Snapshottable* const> devices, std::vector<DeviceState>& out) {
  out.resize(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) save_device(*devices[i], out[i]);
}

void restore_devices(std::span<Snapshottable* const> devices, const std::vector<DeviceState>& saved) {
  std::vector<bool> restored(devices.size(), false);
  for (const DeviceState& s : saved) {
    size_t i = 0;
    while (i < devices.size() && devices[i]->snapshot_id() != s.id) ++i;
    if (i == devices.size())
      throw DecodeError(fmt::format("device {}: saved state has it but this VM has no such device", s.id));
    if (restored[i]) throw DecodeError(fmt::format("device {}: saved twice", s.id));
    const uint32_t supported = devices[i]->snapshot_version();
    if (s.version == 0 || s.version > supported)
      throw DecodeError(fmt::format("device {}: saved with state version {}, this nvhv reads versions 1..{}", s.id,
                                    s.version, supported));
    Decoder in(s.data, fmt::format("device {}", s.id));
    devices[i]->restore(in, s.version);
    in.expect_end();
    restored[i] = true;
  }
  for (size_t i = 0; i < devices.size(); ++i)
    if (!restored[i])
      throw DecodeError(fmt::format("device {}: this VM has it but the saved state does not", devices[i]->snapshot_id()));
}

}  // namespace nvhv::persistence
