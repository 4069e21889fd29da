#include "devices/rtc_cmos.hpp"

#include <time.h>

#include <cstring>
#include <string>

namespace nvhv {
namespace {

// Register indices (MC146818 datasheet).
constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06, kDay = 0x07, kMonth = 0x08,
                  kYear = 0x09, kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d, kCentury = 0x32;
constexpr uint8_t kRegBSet = 0x80, kRegBBinary = 0x04, kRegB24Hour = 0x02;
constexpr uint8_t kRegDValidRam = 0x80;
constexpr uint8_t kPm = 0x80;  // hours register, 12-hour mode

bool is_time_register(uint8_t index) {
  return index <= kYear || index == kCentury;
}

int64_t host_realtime() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

}  // namespace

RtcCmos::RtcCmos(Clock clock) : clock_(clock ? std::move(clock) : Clock(host_realtime)) {
  ram_[kRegA] = 0x26;  // 32.768 kHz time base, 1024 Hz rate; update-in-progress never set
  ram_[kRegB] = kRegB24Hour;
  ram_[kRegD] = kRegDValidRam;
}

int64_t RtcCmos::guest_time() const { return clock_() + offset_seconds_; }

uint8_t RtcCmos::encode(unsigned value) const {
  if (ram_[kRegB] & kRegBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

unsigned RtcCmos::decode(uint8_t value) const {
  if (ram_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10u + (value & 0x0f);
}

uint8_t RtcCmos::read_register(uint8_t index) const {
  if (!is_time_register(index) || (ram_[kRegB] & kRegBSet)) {
    // While SET is on, the guest is writing the time: it reads back what it wrote.
    return index == kRegC ? 0 : ram_[index];
  }
  const time_t now = static_cast<time_t>(guest_time());
  tm t{};
  ::gmtime_r(&now, &t);
  switch (index) {
    case kSeconds: return encode(static_cast<unsigned>(t.tm_sec));
    case kMinutes: return encode(static_cast<unsigned>(t.tm_min));
    case kHours: {
      if (ram_[kRegB] & kRegB24Hour) return encode(static_cast<unsigned>(t.tm_hour));
      const unsigned h12 = t.tm_hour % 12 == 0 ? 12u : static_cast<unsigned>(t.tm_hour % 12);
      return static_cast<uint8_t>(encode(h12) | (t.tm_hour >= 12 ? kPm : 0));
    }
    case kWeekday: return encode(static_cast<unsigned>(t.tm_wday + 1));
    case kDay: return encode(static_cast<unsigned>(t.tm_mday));
    case kMonth: return encode(static_cast<unsigned>(t.tm_mon + 1));
    case kYear: return encode(static_cast<unsigned>((t.tm_year + 1900) % 100));
    case kCentury: return encode(static_cast<unsigned>((t.tm_year + 1900) / 100));
    default: return ram_[index];
  }
}

void RtcCmos::write_register(uint8_t index, uint8_t value) {
  switch (index) {
    case kRegA: ram_[kRegA] = value & 0x7f; return;  // update-in-progress is read-only
    case kRegC:
    case kRegD: return;                               // read-only
    case kRegB: {
      const bool was_set = ram_[kRegB] & kRegBSet;
      if (!was_set && (value & kRegBSet)) {
        // Freeze the current time into the registers so a partial update keeps the other fields.
        for (uint8_t i : {kSeconds, kMinutes, kHours, kWeekday, kDay, kMonth, kYear, kCentury}) ram_[i] = read_register(i);
      }
      ram_[kRegB] = value;
      if (was_set && !(value & kRegBSet)) {
        tm t{};
        t.tm_sec = static_cast<int>(decode(ram_[kSeconds]));
        t.tm_min = static_cast<int>(decode(ram_[kMinutes]));
        uint8_t hours = ram_[kHours];
        if (ram_[kRegB] & kRegB24Hour) {
          t.tm_hour = static_cast<int>(decode(hours));
        } else {
          const int h = static_cast<int>(decode(hours & ~kPm)) % 12;
          t.tm_hour = h + ((hours & kPm) ? 12 : 0);
        }
        t.tm_mday = static_cast<int>(decode(ram_[kDay]));
        t.tm_mon = static_cast<int>(decode(ram_[kMonth])) - 1;
        const unsigned century = decode(ram_[kCentury]);
        t.tm_year = static_cast<int>((century ? century : 20) * 100 + decode(ram_[kYear])) - 1900;
        const time_t set = ::timegm(&t);
        if (set != static_cast<time_t>(-1)) offset_seconds_ = static_cast<int64_t>(set) - clock_();
      }
      return;
    }
    default: ram_[index] = value; return;
  }
}

void RtcCmos::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  const uint8_t v = offset == 0 ? 0xff : read_register(index_);  // the index port is write-only
  std::memset(data.data(), v, data.size());
}

void RtcCmos::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  if (offset == 0) {
    index_ = data[0] & 0x7f;  // bit 7 masks NMI on real boards; nothing to mask here
  } else {
    write_register(index_, data[0]);
  }
}

// Version 1: the index register, the 128 bytes of CMOS RAM (register values and frozen time
// fields included) and the guest's offset from the host's wall clock.
void RtcCmos::save(persistence::Encoder& out) const {
  std::lock_guard lock(mu_);
  out.u8(index_);
  out.bytes(ram_.data(), ram_.size());
  out.u64(static_cast<uint64_t>(offset_seconds_));
}

void RtcCmos::restore(persistence::Decoder& in, uint32_t) {
  std::lock_guard lock(mu_);
  const uint8_t index = in.u8("rtc index");
  if (index >= ram_.size()) throw persistence::DecodeError(in.where() + ": rtc index " + std::to_string(index) + " out of range");
  std::array<uint8_t, 128> ram{};
  in.bytes(ram.data(), ram.size(), "rtc cmos ram");
  offset_seconds_ = static_cast<int64_t>(in.u64("rtc offset"));
  index_ = index;
  ram_ = ram;
}

}  // namespace nvhv
