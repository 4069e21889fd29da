// The CMOS clock as Linux's rtc_cmos driver and hwclock drive it, on a fake host clock.
#include "devices/rtc_cmos.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "persistence/codec.hpp"

namespace nvhv {
namespace {

constexpr int64_t k2026_11_21_14_05_09 = 1795269909;  // a Saturday, UTC

struct Rtc {
  int64_t host_now = k2026_11_21_14_05_09;
  RtcCmos rtc{[this] { return host_now; }};
  uint8_t reg(uint8_t index) {
    rtc.write(0, std::span<const uint8_t>(&index, 1));
    uint8_t v = 0;
    rtc.read(1, std::span(&v, 1));
    return v;
  }
  void set(uint8_t index, uint8_t value) {
    rtc.write(0, std::span<const uint8_t>(&index, 1));
    rtc.write(1, std::span<const uint8_t>(&value, 1));
  }
};

TEST(RtcCmos, ReadsTheHostTimeInBcdAnd24HourModeByDefault) {
  Rtc r;
  EXPECT_EQ(r.reg(0x00), 0x09);
  EXPECT_EQ(r.reg(0x02), 0x05);
  EXPECT_EQ(r.reg(0x04), 0x14);
  EXPECT_EQ(r.reg(0x06), 0x07);  // Saturday = 7
  EXPECT_EQ(r.reg(0x07), 0x21);
  EXPECT_EQ(r.reg(0x08), 0x11);
  EXPECT_EQ(r.reg(0x09), 0x26);
  EXPECT_EQ(r.reg(0x32), 0x20);
  EXPECT_EQ(r.reg(0x0a) & 0x80, 0) << "update in progress must never be seen";
  EXPECT_EQ(r.reg(0x0d), 0x80) << "valid RAM and time";
  EXPECT_EQ(r.reg(0x0c), 0x00);
  r.host_now += 61;
  EXPECT_EQ(r.reg(0x00), 0x10);
  EXPECT_EQ(r.reg(0x02), 0x06);
}

TEST(RtcCmos, BinaryAnd12HourModes) {
  Rtc r;
  r.set(0x0b, 0x04);  // binary, 12-hour
  EXPECT_EQ(r.reg(0x04), 0x80 | 2) << "14:05 is 2 PM";
  EXPECT_EQ(r.reg(0x07), 21);
  EXPECT_EQ(r.reg(0x09), 26);
}

TEST(RtcCmos, GuestSetsTheClockWithTheSetBit) {
  Rtc r;
  r.set(0x0b, 0x82);  // SET, BCD, 24 h: the clock freezes and takes writes
  r.set(0x04, 0x08);  // 08:05:09 the same day: six hours back
  r.host_now += 100;
  EXPECT_EQ(r.reg(0x04), 0x08) << "frozen registers read back what was written";
  r.set(0x0b, 0x02);
  EXPECT_EQ(r.reg(0x04), 0x08);
  EXPECT_EQ(r.reg(0x02), 0x05);
  EXPECT_EQ(r.reg(0x00), 0x09);
  r.host_now += 3600;
  EXPECT_EQ(r.reg(0x04), 0x09) << "the guest clock runs on from where it was set";
}

TEST(RtcCmos, CmosRamKeepsBytesAndTheIndexPortReadsFloating) {
  Rtc r;
  r.set(0x40, 0xab);
  EXPECT_EQ(r.reg(0x40), 0xab);
  uint8_t v = 0;
  r.rtc.read(0, std::span(&v, 1));
  EXPECT_EQ(v, 0xff);
  r.set(0x0d, 0x00);
  EXPECT_EQ(r.reg(0x0d), 0x80) << "register D is read-only";
  r.set(0x80 | 0x40, 0);  // bit 7 of the index is the NMI mask, not part of the index
  EXPECT_EQ(r.reg(0x40), 0x00);
}

TEST(RtcCmos, SaveRestoreRoundTrip) {
  Rtc a;
  a.set(0x0b, 0x82);
  a.set(0x09, 0x30);
  a.set(0x0b, 0x02);  // guest clock: 2030
  a.set(0x41, 0x5a);
  std::vector<uint8_t> buf;
  {
    persistence::Encoder enc(buf);
    a.rtc.save(enc);
  }

  Rtc b;
  persistence::Decoder dec(buf, "rtc0");
  b.rtc.restore(dec, b.rtc.snapshot_version());
  EXPECT_TRUE(dec.at_end());
  EXPECT_EQ(b.reg(0x09), 0x30);
  EXPECT_EQ(b.reg(0x41), 0x5a);

  std::vector<uint8_t> cut(buf.begin(), buf.end() - 1);
  Rtc c;
  persistence::Decoder short_dec(cut, "rtc0");
  EXPECT_THROW(c.rtc.restore(short_dec, 1), persistence::DecodeError);
}

}  // namespace
}  // namespace nvhv
