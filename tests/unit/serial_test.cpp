// The UART as the guest drives it, with output captured through a pipe.
#include "devices/serial.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "devices/io_bus.hpp"
#include "devices/system_control.hpp"

namespace nvhv {
namespace {

struct SerialFixture : ::testing::Test {
  void SetUp() override { ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0); }
  void TearDown() override {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  std::string drain() {
    std::string s;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
  }
  uint8_t in(Serial& s, uint64_t reg) {
    uint8_t v = 0;
    s.read(reg, std::span(&v, 1));
    return v;
  }
  void out(Serial& s, uint64_t reg, uint8_t v) { s.write(reg, std::span<const uint8_t>(&v, 1)); }
  int fds[2];
  std::vector<bool> irq_levels;
};

TEST_F(SerialFixture, LineBufferedTransmit) {
  Serial s(fds[1], true, [&](bool l) { irq_levels.push_back(l); });
  for (char c : std::string("hello")) out(s, 0, static_cast<uint8_t>(c));
  EXPECT_EQ(drain(), "");  // not yet a whole line
  out(s, 0, '\n');
  EXPECT_EQ(drain(), "hello\n");
  EXPECT_EQ(in(s, 5) & 0x60, 0x60);  // THR empty and transmitter idle
}

TEST_F(SerialFixture, DivisorLatchDoesNotTransmit) {
  Serial s(fds[1], false, nullptr);
  out(s, 3, 0x80);  // DLAB
  out(s, 0, 0x01);
  out(s, 1, 0x00);
  EXPECT_EQ(in(s, 0), 0x01);
  out(s, 3, 0x03);
  EXPECT_EQ(drain(), "");
  out(s, 0, 'x');
  EXPECT_EQ(drain(), "x");
}

TEST_F(SerialFixture, ThrEmptyInterruptRaisedAndAcknowledged) {
  Serial s(fds[1], false, [&](bool l) { irq_levels.push_back(l); });
  out(s, 4, 0x08);  // OUT2 gates the interrupt
  out(s, 1, 0x02);  // enable THR-empty interrupt: THR is empty, so it fires now
  ASSERT_FALSE(irq_levels.empty());
  EXPECT_TRUE(irq_levels.back());
  EXPECT_EQ(in(s, 2) & 0x0f, 0x02);  // IIR reports THR empty, which acknowledges it
  EXPECT_FALSE(irq_levels.back());
  EXPECT_EQ(in(s, 2) & 0x0f, 0x01);
}

TEST_F(SerialFixture, ReceiveAndLoopback) {
  Serial s(fds[1], false, [&](bool l) { irq_levels.push_back(l); });
  out(s, 4, 0x08);
  out(s, 1, 0x01);
  s.enqueue_input(std::vector<uint8_t>{'a', 'b'});
  EXPECT_TRUE(irq_levels.back());
  EXPECT_EQ(in(s, 5) & 1, 1);
  EXPECT_EQ(in(s, 2) & 0x0f, 0x04);
  EXPECT_EQ(in(s, 0), 'a');
  EXPECT_EQ(in(s, 0), 'b');
  EXPECT_EQ(in(s, 5) & 1, 0);
  EXPECT_FALSE(irq_levels.back());
  out(s, 4, 0x10 | 0x0b);  // loopback with DTR, RTS, OUT2
  out(s, 0, 'z');
  EXPECT_EQ(drain(), "");   // looped back, not transmitted
  EXPECT_EQ(in(s, 0), 'z');
  EXPECT_EQ(in(s, 6) & 0xf0, 0x20 | 0x10 | 0x80);
}

TEST_F(SerialFixture, RegistersRoundTrip) {
  Serial a(fds[1], false, nullptr), b(fds[1], false, nullptr);
  out(a, 3, 0x83);
  out(a, 0, 0x02);
  out(a, 3, 0x03);
  out(a, 7, 0x5a);
  a.enqueue_input(std::vector<uint8_t>{'q'});
  b.set_registers(a.registers());
  EXPECT_EQ(in(b, 7), 0x5a);
  EXPECT_EQ(in(b, 3), 0x03);
  EXPECT_EQ(in(b, 0), 'q');
}

TEST(IoBus, DispatchesAndRejectsOverlaps) {
  struct Recorder : BusDevice {
    void read(uint64_t off, std::span<uint8_t> d) override { d[0] = static_cast<uint8_t>(off); }
    void write(uint64_t off, std::span<const uint8_t> d) override { last = {off, d[0]}; }
    std::pair<uint64_t, uint8_t> last{};
  };
  IoBus bus("test");
  auto dev = std::make_shared<Recorder>();
  bus.add(0x3f8, 8, dev);
  EXPECT_THROW(bus.add(0x3fc, 8, dev), std::invalid_argument);
  EXPECT_THROW(bus.add(0x3f0, 9, dev), std::invalid_argument);
  EXPECT_THROW(bus.add(UINT64_MAX, 2, dev), std::invalid_argument);
  bus.add(0x3f0, 8, dev);
  uint8_t v = 0;
  EXPECT_TRUE(bus.read(0x3fd, std::span(&v, 1)));
  EXPECT_EQ(v, 5);
  uint8_t w = 7;
  EXPECT_TRUE(bus.write(0x3f9, std::span<const uint8_t>(&w, 1)));
  EXPECT_EQ(dev->last.first, 1u);
  uint16_t wide = 0;
  EXPECT_FALSE(bus.read(0x3ff + 0, std::span(reinterpret_cast<uint8_t*>(&wide), 2)));  // crosses the end
  EXPECT_EQ(wide, 0xffff);
  EXPECT_FALSE(bus.read(0x500, std::span(&v, 1)));
}

TEST(SystemControl, PowerOffAndResetPorts) {
  std::vector<SystemEvent> events;
  auto cb = [&](SystemEvent e) { events.push_back(e); };
  SystemControl pm(SystemControl::kPm1aControl, cb), kbd(SystemControl::kI8042Command, cb), rc(SystemControl::kResetControl, cb);
  uint16_t slp = 0x2000, other = 0x0001;
  pm.write(0, std::span(reinterpret_cast<const uint8_t*>(&other), 2));
  EXPECT_TRUE(events.empty());
  pm.write(0, std::span(reinterpret_cast<const uint8_t*>(&slp), 2));
  uint8_t fe = 0xfe, ff = 0xff, rst = 0x06;
  kbd.write(0, std::span<const uint8_t>(&ff, 1));
  kbd.write(0, std::span<const uint8_t>(&fe, 1));
  rc.write(0, std::span<const uint8_t>(&rst, 1));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], SystemEvent::power_off);
  EXPECT_EQ(events[1], SystemEvent::reset);
  EXPECT_EQ(events[2], SystemEvent::reset);
}

}  // namespace
}  // namespace nvhv
