#pragma once
// The 256-byte configuration space of one PCI function with a type-0 header: identity fields,
// per-byte write masks, memory BARs with the sizing protocol, and a capability list. Functions
// own one and add their own side effects around read()/write().
#include <array>
#include <cstdint>
#include <span>

#include "devices/pci/pci_regs.hpp"
#include "persistence/codec.hpp"

namespace nvhv::pci {

struct Identity {
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint32_t class_code = 0;  // class << 16 | subclass << 8 | prog-if
  uint8_t revision = 0;
  uint16_t subsystem_vendor = 0;
  uint16_t subsystem = 0;
  uint8_t interrupt_pin = 0;  // 0 none, 1 INTA#
};

class ConfigSpace {
 public:
  explicit ConfigSpace(const Identity& id);

  // A 64-bit memory BAR occupying registers index and index+1. size is a power of two >= 16.
  void add_mem64_bar(uint32_t index, uint64_t size, bool prefetchable);
  // What firmware would program before boot; also what the register holds until the guest
  // writes it.
  void set_bar_address(uint32_t index, uint64_t address);
  // The address the BAR register holds now (it reads back as the size mask while sizing).
  uint64_t bar_address(uint32_t index) const;
  uint64_t bar_size(uint32_t index) const { return bar_size_[index]; }

  // Appends a capability (body excludes the id and next bytes) and links it into the list;
  // returns its offset. Throws std::length_error when it does not fit.
  uint32_t add_capability(uint8_t id, std::span<const uint8_t> body);
  // Bytes the guest may change in [offset, offset + mask.size()); a 1 bit is writable.
  void set_writable(uint32_t offset, std::span<const uint8_t> mask);

  uint16_t command() const { return u16(kCommand); }
  void set_interrupt_status(bool pending);
  uint8_t interrupt_line() const { return bytes_[kInterruptLine]; }
  void set_interrupt_line(uint8_t line) { bytes_[kInterruptLine] = line; }

  // Guest access; the range must lie within the space (callers pass dword-contained accesses).
  void read(uint32_t offset, std::span<uint8_t> out) const;
  void write(uint32_t offset, std::span<const uint8_t> in);

  // Direct access for the owning function's read-only-to-guest fields.
  uint8_t* raw() { return bytes_.data(); }
  uint16_t u16(uint32_t offset) const { return static_cast<uint16_t>(bytes_[offset] | bytes_[offset + 1] << 8); }
  uint32_t u32(uint32_t offset) const;
  void put_u16(uint32_t offset, uint16_t v);
  void put_u32(uint32_t offset, uint32_t v);

  // Saved: every byte plus the BAR registers. restore() refuses state whose identity fields
  // (IDs, class, header type, capability pointer) differ from this function's.
  void save(persistence::Encoder& out) const;
  void restore(persistence::Decoder& in);

 private:
  void write_bar_byte(uint32_t offset, uint8_t v);

  std::array<uint8_t, 256> bytes_{};
  std::array<uint8_t, 256> wmask_{};
  // BAR registers as the guest sees them: (value & addr_mask) | flags.
  std::array<uint32_t, 6> bar_reg_{};
  std::array<uint32_t, 6> bar_addr_mask_{};
  std::array<uint32_t, 6> bar_flags_{};
  std::array<uint64_t, 6> bar_size_{};
  uint32_t next_cap_ = kFirstCapability;
  uint32_t last_cap_ = 0;
};

}  // namespace nvhv::pci
