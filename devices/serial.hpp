#pragma once
// A 16550A UART as Linux's 8250 driver and testos use it: transmit goes straight to a file
// descriptor, receive comes from the host (stdin when it is a terminal), interrupts go to one
// ISA IRQ line. Loopback mode is implemented because Linux probes the port with it.
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "devices/io_bus.hpp"
#include "persistence/snapshottable.hpp"

namespace nvhv {

struct SerialRegisters {
  uint8_t ier = 0, lcr = 0, mcr = 0x08, lsr = 0x60, msr = 0xb0, scr = 0, dll = 0x0c, dlm = 0, fcr = 0;
  bool thr_interrupt_pending = false;
  std::deque<uint8_t> rx;
};

class Serial : public BusDevice, public persistence::Snapshottable {
 public:
  using IrqLine = std::function<void(bool level)>;
  // Output goes to out_fd; when line_buffered, whole lines (or 4 KiB) per write(2).
  Serial(int out_fd, bool line_buffered, IrqLine irq);
  ~Serial() override;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host-side input (from the event loop).
  void enqueue_input(std::span<const uint8_t> bytes);
  void flush_output();

  SerialRegisters registers() const;
  void set_registers(const SerialRegisters& regs);

  std::string snapshot_id() const override { return snapshot_id_; }
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;
  void set_snapshot_id(std::string id) { snapshot_id_ = std::move(id); }

 private:
  void transmit(uint8_t byte);
  uint8_t interrupt_identification() const;
  void update_irq();
  void flush_locked();

  mutable std::mutex mu_;
  SerialRegisters r_;
  int out_fd_;
  bool line_buffered_;
  std::string out_buf_;
  IrqLine irq_;
  bool irq_level_ = false;
  std::string snapshot_id_ = "serial0";
};

}  // namespace nvhv
