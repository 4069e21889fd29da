#include "devices/pci/config_space.hpp"

#include <fmt/core.h>

#include <stdexcept>

namespace nvhv::pci {
namespace {

constexpr uint32_t kBarEnd = kBar0 + 4 * kBarCount;

bool in_bars(uint32_t offset) { return offset >= kBar0 && offset < kBarEnd; }

}  // namespace

ConfigSpace::ConfigSpace(const Identity& id) {
  put_u16(kVendorId, id.vendor);
  put_u16(kDeviceId, id.device);
  bytes_[kRevision] = id.revision;
  bytes_[kClassProgIf] = static_cast<uint8_t>(id.class_code);
  bytes_[kClassProgIf + 1] = static_cast<uint8_t>(id.class_code >> 8);
  bytes_[kClassProgIf + 2] = static_cast<uint8_t>(id.class_code >> 16);
  bytes_[kHeaderType] = 0x00;  // type 0, single function
  put_u16(kSubsystemVendorId, id.subsystem_vendor);
  put_u16(kSubsystemId, id.subsystem);
  bytes_[kInterruptPin] = id.interrupt_pin;
  // Guest-writable header fields. I/O decode stays hardwired to 0: nvhv has no I/O BARs.
  const uint16_t command_mask = kCommandMemory | kCommandBusMaster | (1u << 6) | kCommandSerr | kCommandIntxDisable;
  wmask_[kCommand] = static_cast<uint8_t>(command_mask);
  wmask_[kCommand + 1] = static_cast<uint8_t>(command_mask >> 8);
  wmask_[kCacheLineSize] = 0xff;
  wmask_[kLatencyTimer] = 0xff;
  wmask_[kInterruptLine] = 0xff;
}

uint32_t ConfigSpace::u32(uint32_t offset) const {
  return static_cast<uint32_t>(bytes_[offset]) | static_cast<uint32_t>(bytes_[offset + 1]) << 8 |
         static_cast<uint32_t>(bytes_[offset + 2]) << 16 | static_cast<uint32_t>(bytes_[offset + 3]) << 24;
}

void ConfigSpace::put_u16(uint32_t offset, uint16_t v) {
  bytes_[offset] = static_cast<uint8_t>(v);
  bytes_[offset + 1] = static_cast<uint8_t>(v >> 8);
}

void ConfigSpace::put_u32(uint32_t offset, uint32_t v) {
  for (uint32_t i = 0; i < 4; ++i) bytes_[offset + i] = static_cast<uint8_t>(v >> (8 * i));
}

void ConfigSpace::add_mem64_bar(uint32_t index, uint64_t size, bool prefetchable) {
  auto used = [&](uint32_t r) { return bar_addr_mask_[r] != 0 || bar_flags_[r] != 0; };
  if (index + 1 >= kBarCount || size < 16 || (size & (size - 1)) != 0 || used(index) || used(index + 1))
    throw std::invalid_argument(fmt::format("PCI BAR{}: bad 64-bit BAR (size {:#x})", index, size));
  bar_size_[index] = size;
  const uint64_t mask = ~(size - 1);
  bar_addr_mask_[index] = static_cast<uint32_t>(mask) & ~0xfu;
  bar_flags_[index] = kBarMem64 | (prefetchable ? kBarPrefetchable : 0);
  bar_addr_mask_[index + 1] = static_cast<uint32_t>(mask >> 32);
  bar_flags_[index + 1] = 0;
  bar_reg_[index] = bar_flags_[index];
  bar_reg_[index + 1] = 0;
}

void ConfigSpace::set_bar_address(uint32_t index, uint64_t address) {
  if (index + 1 >= kBarCount || bar_size_[index] == 0 || (address & (bar_size_[index] - 1)) != 0)
    throw std::invalid_argument(fmt::format("PCI BAR{}: address {:#x} is not a naturally aligned BAR address", index, address));
  bar_reg_[index] = (static_cast<uint32_t>(address) & bar_addr_mask_[index]) | bar_flags_[index];
  bar_reg_[index + 1] = static_cast<uint32_t>(address >> 32) & bar_addr_mask_[index + 1];
}

uint64_t ConfigSpace::bar_address(uint32_t index) const {
  if (index + 1 >= kBarCount || bar_size_[index] == 0) return 0;
  return (bar_reg_[index] & ~0xfull) | static_cast<uint64_t>(bar_reg_[index + 1]) << 32;
}

uint32_t ConfigSpace::add_capability(uint8_t id, std::span<const uint8_t> body) {
  const uint32_t offset = next_cap_;
  const uint32_t end = offset + 2 + static_cast<uint32_t>(body.size());
  if (end > kConfigSpaceSize) throw std::length_error("PCI capability list does not fit the configuration space");
  bytes_[offset] = id;
  bytes_[offset + 1] = 0;  // end of list until another is added
  for (size_t i = 0; i < body.size(); ++i) bytes_[offset + 2 + i] = body[i];
  if (last_cap_ == 0) {
    bytes_[kCapabilityPointer] = static_cast<uint8_t>(offset);
    put_u16(kStatus, static_cast<uint16_t>(u16(kStatus) | kStatusCapabilities));
  } else {
    bytes_[last_cap_ + 1] = static_cast<uint8_t>(offset);
  }
  last_cap_ = offset;
  next_cap_ = (end + 3) & ~3u;  // capabilities start dword-aligned
  return offset;
}

void ConfigSpace::set_writable(uint32_t offset, std::span<const uint8_t> mask) {
  if (offset + mask.size() > kConfigSpaceSize) throw std::out_of_range("PCI write mask outside the configuration space");
  for (size_t i = 0; i < mask.size(); ++i) wmask_[offset + i] = mask[i];
}

void ConfigSpace::set_interrupt_status(bool pending) {
  uint16_t status = u16(kStatus);
  status = pending ? (status | kStatusInterrupt) : (status & ~kStatusInterrupt);
  put_u16(kStatus, static_cast<uint16_t>(status));
}

void ConfigSpace::read(uint32_t offset, std::span<uint8_t> out) const {
  for (size_t i = 0; i < out.size(); ++i) {
    const uint32_t o = offset + static_cast<uint32_t>(i);
    if (o >= kConfigSpaceSize) {
      out[i] = 0xff;
    } else if (in_bars(o)) {
      out[i] = static_cast<uint8_t>(bar_reg_[(o - kBar0) / 4] >> (8 * (o % 4)));
    } else {
      out[i] = bytes_[o];
    }
  }
}

void ConfigSpace::write_bar_byte(uint32_t offset, uint8_t v) {
  const uint32_t reg = (offset - kBar0) / 4;
  const uint32_t shift = 8 * (offset % 4);
  const uint32_t merged = (bar_reg_[reg] & ~(0xffu << shift)) | static_cast<uint32_t>(v) << shift;
  // Writing all-ones and reading back yields the size mask: the sizing protocol falls out of
  // masking with the address bits the BAR decodes.
  bar_reg_[reg] = (merged & bar_addr_mask_[reg]) | bar_flags_[reg];
}

void ConfigSpace::write(uint32_t offset, std::span<const uint8_t> in) {
  for (size_t i = 0; i < in.size(); ++i) {
    const uint32_t o = offset + static_cast<uint32_t>(i);
    if (o >= kConfigSpaceSize) return;
    if (in_bars(o)) {
      write_bar_byte(o, in[i]);
    } else {
      bytes_[o] = static_cast<uint8_t>((bytes_[o] & ~wmask_[o]) | (in[i] & wmask_[o]));
    }
  }
}

void ConfigSpace::save(persistence::Encoder& out) const {
  out.bytes(bytes_.data(), bytes_.size());
  for (uint32_t r : bar_reg_) out.u32(r);
}

void ConfigSpace::restore(persistence::Decoder& in) {
  std::array<uint8_t, 256> saved{};
  in.bytes(saved.data(), saved.size(), "PCI configuration space");
  std::array<uint32_t, 6> regs{};
  for (auto& r : regs) r = in.u32("PCI BAR register");
  // Identity fields and the capability layout are fixed by the device model: a mismatch means
  // the state belongs to another device (or another nvhv version's layout).
  auto same = [&](uint32_t from, uint32_t to) {
    for (uint32_t o = from; o < to; ++o)
      if (saved[o] != bytes_[o]) return false;
    return true;
  };
  if (!same(kVendorId, kCommand) || !same(kRevision, kCacheLineSize) || !same(kHeaderType, kHeaderType + 1) ||
      !same(kSubsystemVendorId, kExpansionRom) || !same(kCapabilityPointer, kCapabilityPointer + 1) ||
      !same(kInterruptPin, kInterruptPin + 1))
    in.fail("PCI configuration space", "identity differs from this device (IDs, class or capability layout changed)");
  for (uint32_t r = 0; r < kBarCount; ++r)
    if ((regs[r] & ~bar_addr_mask_[r]) != bar_flags_[r])
      in.fail("PCI BAR register", fmt::format("BAR{} type bits {:#x} differ from this device's", r, regs[r] & 0xf));
  bytes_ = saved;
  bar_reg_ = regs;
}

}  // namespace nvhv::pci
