#pragma once
// The PC's MC146818 real-time clock and CMOS RAM at ports 0x70 (index) / 0x71 (data).
// Linux's rtc_cmos and `hwclock` read the wall-clock time from it; without one, the driver's
// probe spins for seconds on the update-in-progress bit of a floating bus. The clock is the host's
// CLOCK_REALTIME (UTC) plus an offset the guest sets by writing the time registers; there are no
// periodic, alarm or update interrupts (register C always reads 0), which Linux tolerates.
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>

#include "devices/io_bus.hpp"
#include "persistence/snapshottable.hpp"

namespace nvhv {

class RtcCmos : public BusDevice, public persistence::Snapshottable {
 public:
  static constexpr uint64_t kBase = 0x70;
  using Clock = std::function<int64_t()>;  // seconds since the epoch, UTC

  explicit RtcCmos(Clock clock = {});
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  std::string snapshot_id() const override { return "rtc0"; }
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;

 private:
  int64_t guest_time() const;
  uint8_t read_register(uint8_t index) const;
  void write_register(uint8_t index, uint8_t value);
  uint8_t encode(unsigned value) const;
  unsigned decode(uint8_t value) const;

  mutable std::mutex mu_;
  Clock clock_;
  uint8_t index_ = 0;
  std::array<uint8_t, 128> ram_{};
  int64_t offset_seconds_ = 0;  // guest wall clock minus host wall clock
};

}  // namespace nvhv
