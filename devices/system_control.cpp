#include "devices/system_control.hpp"

#include <cstring>

namespace nvhv {

void SystemControl::read(uint64_t, std::span<uint8_t> data) {
  // i8042 status 0: no data, input buffer empty; PM1a control reads back 0 (SCI_EN clear).
  std::memset(data.data(), 0, data.size());
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
