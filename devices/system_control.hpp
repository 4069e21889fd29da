#pragma once
// The ports guests use to power off or reset the machine:
//   0x604  ACPI PM1a control: SLP_EN (bit 13) powers off (QEMU's pc/q35 place it here too)
//   0x64   i8042 command 0xFE: pulse the reset line (Linux reboot=k, the default fallback)
//   0xcf9  reset control register: RST_CPU (bit 2) resets
#include <functional>

#include "devices/io_bus.hpp"

namespace nvhv {

enum class SystemEvent { power_off, reset };

class SystemControl : public BusDevice {
 public:
  static constexpr uint64_t kPm1aControl = 0x604, kI8042Command = 0x64, kResetControl = 0xcf9;

  explicit SystemControl(uint64_t base, std::function<void(SystemEvent)> on_event)
      : base_(base), on_event_(std::move(on_event)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  uint64_t base_;
  std::function<void(SystemEvent)> on_event_;
};

}  // namespace nvhv
