#include "devices/system_control.hpp"

#include <cstring>

namespace nvhv {

void SystemControl::read(uint64_t offset, std::span<uint8_t> data) {
  // There is no keyboard controller behind the i8042 reset port. Its status reads "output buffer
  // full, input buffer empty" (and the data port, unclaimed, 0xff): Linux's probe then drains 16
  // bytes and gives up at once instead of timing out for seconds, while the reset path, which only
  // waits for an empty input buffer, goes straight through. PM1a control reads 0 (SCI_EN clear).
  const uint8_t value = base_ + offset == kI8042Command ? 0x01 : 0x00;
  std::memset(data.data(), value, data.size());
}

void SystemControl::write(uint64_t offset, std::span<const uint8_t> data) {
  uint64_t value = 0;
  std::memcpy(&value, data.data(), std::min(data.size(), sizeof value));
  switch (base_ + offset) {
    case kPm1aControl:
      if (data.size() >= 2 && (value & 0x2000)) on_event_(SystemEvent::power_off);
      break;
    case kI8042Command:
      if ((value & 0xff) == 0xfe) on_event_(SystemEvent::reset);
      break;
    case kResetControl:
      if (value & 0x04) on_event_(SystemEvent::reset);
      break;
    default:
      break;
  }
}

}  // namespace nvhv
