#include "devices/serial.hpp"

#include <unistd.h>

namespace nvhv {
namespace {

constexpr uint8_t kIerRxAvailable = 0x01, kIerThrEmpty = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxAvailable = 0x04, kIirFifoEnabled = 0xc0;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoopback = 0x10;
constexpr uint8_t kLsrDataReady = 0x01, kLsrIdle = 0x60;
constexpr size_t kRxFifoLimit = 4096;
constexpr size_t kOutputFlushBytes = 4096;

}  // namespace

Serial::Serial(int out_fd, bool line_buffered, IrqLine irq)
    : out_fd_(out_fd), line_buffered_(line_buffered), irq_(std::move(irq)) {}

Serial::~Serial() { flush_output(); }

uint8_t Serial::interrupt_identification() const {
  uint8_t fifo = (r_.fcr & 1) ? kIirFifoEnabled : 0;
  if ((r_.ier & kIerRxAvailable) && !r_.rx.empty()) return kIirRxAvailable | fifo;
  if ((r_.ier & kIerThrEmpty) && r_.thr_interrupt_pending) return kIirThrEmpty | fifo;
  return kIirNone | fifo;
}

void Serial::update_irq() {
  bool level = (interrupt_identification() & kIirNone) == 0 && (r_.mcr & 0x08);  // OUT2 gates the IRQ
  if (level != irq_level_) {
    irq_level_ = level;
    if (irq_) irq_(level);
  }
}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  uint8_t v = 0;
  switch (offset) {
    case 0:
      if (r_.lcr & kLcrDlab) {
        v = r_.dll;
      } else if (!r_.rx.empty()) {
        v = r_.rx.front();
        r_.rx.pop_front();
      }
      break;
    case 1: v = (r_.lcr & kLcrDlab) ? r_.dlm : r_.ier; break;
    case 2:
      v = interrupt_identification();
      // Reading IIR acknowledges a THR-empty interrupt (16550 datasheet).
      if ((v & 0x0f) == kIirThrEmpty) r_.thr_interrupt_pending = false;
      break;
    case 3: v = r_.lcr; break;
    case 4: v = r_.mcr; break;
    case 5: v = static_cast<uint8_t>(kLsrIdle | (r_.rx.empty() ? 0 : kLsrDataReady)); break;
    case 6:
      if (r_.mcr & kMcrLoopback) {
        // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        v = static_cast<uint8_t>(((r_.mcr & 0x01) << 5) | ((r_.mcr & 0x02) << 3) | ((r_.mcr & 0x04) << 4) | ((r_.mcr & 0x08) << 4));
      } else {
        v = r_.msr;
      }
      break;
    case 7: v = r_.scr; break;
    default: v = 0xff; break;
  }
  for (auto& b : data) b = v;
  update_irq();
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  uint8_t v = data[0];
  switch (offset) {
    case 0:
      if (r_.lcr & kLcrDlab) {
        r_.dll = v;
      } else {
        if (r_.mcr & kMcrLoopback) {
          if (r_.rx.size() < kRxFifoLimit) r_.rx.push_back(v);
        } else {
          transmit(v);
        }
        r_.thr_interrupt_pending = true;  // the byte left at once: THR is empty again
      }
      break;
    case 1:
      if (r_.lcr & kLcrDlab) {
        r_.dlm = v;
      } else {
        // Enabling the THR-empty interrupt while THR is empty raises it at once.
        if ((v & kIerThrEmpty) && !(r_.ier & kIerThrEmpty)) r_.thr_interrupt_pending = true;
        r_.ier = v & 0x0f;
      }
      break;
    case 2:
      r_.fcr = v;
      if (v & 0x02) r_.rx.clear();
      break;
    case 3: r_.lcr = v; break;
    case 4: r_.mcr = v & 0x1f; break;
    case 7: r_.scr = v; break;
    default: break;
  }
  update_irq();
}

void Serial::transmit(uint8_t byte) {
  out_buf_.push_back(static_cast<char>(byte));
  if (!line_buffered_ || byte == '\n' || out_buf_.size() >= kOutputFlushBytes) flush_locked();
}

void Serial::flush_locked() {
  size_t done = 0;
  while (done < out_buf_.size()) {
    ssize_t n = ::write(out_fd_, out_buf_.data() + done, out_buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the reader went away: drop output rather than stall the guest
    done += static_cast<size_t>(n);
  }
  out_buf_.clear();
}

void Serial::flush_output() {
  std::lock_guard lock(mu_);
  flush_locked();
}

void Serial::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  for (uint8_t b : bytes)
    if (r_.rx.size() < kRxFifoLimit) r_.rx.push_back(b);
  update_irq();
}

SerialRegisters Serial::registers() const {
  std::lock_guard lock(mu_);
  return r_;
}

void Serial::set_registers(const SerialRegisters& regs) {
  std::lock_guard lock(mu_);
  r_ = regs;
  irq_level_ = false;
  update_irq();
}

}  // namespace nvhv

namespace nvhv {

// Version 1: the eight byte-wide registers and divisor latch, the pending THR-empty interrupt
// and the unread receive FIFO. Output already handed to the host is not device state.
void Serial::save(persistence::Encoder& out) const {
  std::lock_guard lock(mu_);
  for (uint8_t v : {r_.ier, r_.lcr, r_.mcr, r_.lsr, r_.msr, r_.scr, r_.dll, r_.dlm, r_.fcr}) out.u8(v);
  out.boolean(r_.thr_interrupt_pending);
  out.u32(static_cast<uint32_t>(r_.rx.size()));
  for (uint8_t b : r_.rx) out.u8(b);
}

void Serial::restore(persistence::Decoder& in, uint32_t) {
  SerialRegisters r;
  for (uint8_t* v : {&r.ier, &r.lcr, &r.mcr, &r.lsr, &r.msr, &r.scr, &r.dll, &r.dlm, &r.fcr}) *v = in.u8("serial register");
  r.thr_interrupt_pending = in.boolean("serial thr_interrupt_pending");
  uint32_t n = in.u32("serial rx length");
  if (n > kRxFifoLimit) throw persistence::DecodeError(in.where() + ": serial rx length " + std::to_string(n) + " exceeds the FIFO limit");
  for (uint32_t i = 0; i < n; ++i) r.rx.push_back(in.u8("serial rx byte"));
  set_registers(r);
}

}  // namespace nvhv
