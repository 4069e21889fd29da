#pragma once
// An MSI-X table and pending-bit array (PCI 3.0, 6.8.2) for one function. Enable and
// function-mask live in the capability's message control (in configuration space); the
// transport passes them in whenever that register changes.
//
// Not thread-safe: the owning transport's lock covers every call.
#include <cstdint>
#include <span>
#include <vector>

#include "devices/pci/interrupt_sink.hpp"
#include "persistence/codec.hpp"

namespace nvhv::virtio {

class MsixTable {
 public:
  static constexpr uint32_t kEntrySize = 16;

  MsixTable(uint16_t vectors, pci::InterruptSink& sink);

  uint16_t size() const { return vectors_; }
  uint64_t table_bytes() const { return table_.size(); }
  uint64_t pba_bytes() const { return (vectors_ + 63) / 64 * 8; }
  bool enabled() const { return enabled_; }

  void table_read(uint64_t offset, std::span<uint8_t> data) const;
  void table_write(uint64_t offset, std::span<const uint8_t> data);
  void pba_read(uint64_t offset, std::span<uint8_t> data) const;
  // From the capability's message control; unmasking delivers what became pending meanwhile.
  void set_control(bool enabled, bool function_masked);
  // Sends `vector`, or records it pending while masked. Ignored when MSI-X is disabled or the
  // vector is outside the table.
  void notify(uint16_t vector);
  bool pending(uint16_t vector) const { return vector < vectors_ && (pending_[vector / 64] >> (vector % 64)) & 1; }
  // Back to power-on: every entry masked and zeroed, nothing pending.
  void reset();

  // Table and pending bits; enable and function mask are restored with configuration space.
  void save(persistence::Encoder& out) const;
  void restore(persistence::Decoder& in);

 private:
  bool masked(uint16_t vector) const;
  void deliver_pending();

  uint16_t vectors_;
  pci::InterruptSink& sink_;
  std::vector<uint8_t> table_;
  std::vector<uint64_t> pending_;
  bool enabled_ = false;
  bool function_masked_ = false;
};

}  // namespace nvhv::virtio
