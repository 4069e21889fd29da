#include "devices/virtio/msix.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace nvhv::virtio {
namespace {
constexpr uint32_t kVectorControl = 12;
constexpr uint8_t kVectorMasked = 1;
}  // namespace

MsixTable::MsixTable(uint16_t vectors, pci::InterruptSink& sink) : vectors_(vectors), sink_(sink) {
  if (vectors == 0 || vectors > 2048) throw std::invalid_argument("MSI-X table size must be 1..2048");
  table_.resize(size_t{vectors} * kEntrySize);
  pending_.resize((vectors + 63) / 64);
  reset();
}

void MsixTable::reset() {
  std::fill(table_.begin(), table_.end(), 0);
  for (uint16_t v = 0; v < vectors_; ++v) table_[v * kEntrySize + kVectorControl] = kVectorMasked;
  std::fill(pending_.begin(), pending_.end(), 0);
}

bool MsixTable::masked(uint16_t vector) const {
  return function_masked_ || (table_[vector * kEntrySize + kVectorControl] & kVectorMasked);
}

void MsixTable::table_read(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < table_.size() ? table_[offset + i] : 0;
}

void MsixTable::table_write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= table_.size() || data.size() > table_.size() - offset) return;
  std::memcpy(table_.data() + offset, data.data(), data.size());
  // Only the mask bit of vector control is defined; the rest reads as zero.
  const uint64_t first = offset / kEntrySize, last = (offset + data.size() - 1) / kEntrySize;
  for (uint64_t e = first; e <= last; ++e) {
    table_[e * kEntrySize + kVectorControl] &= kVectorMasked;
    table_[e * kEntrySize + kVectorControl + 1] = 0;
    table_[e * kEntrySize + kVectorControl + 2] = 0;
    table_[e * kEntrySize + kVectorControl + 3] = 0;
  }
  deliver_pending();
}

void MsixTable::pba_read(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t byte = offset + i;
    data[i] = byte / 8 < pending_.size() ? static_cast<uint8_t>(pending_[byte / 8] >> (8 * (byte % 8))) : 0;
  }
}

void MsixTable::set_control(bool enabled, bool function_masked) {
  enabled_ = enabled;
  function_masked_ = function_masked;
  deliver_pending();
}

void MsixTable::deliver_pending() {
  if (!enabled_ || function_masked_) return;
  for (uint16_t v = 0; v < vectors_; ++v) {
    if (!pending(v) || masked(v)) continue;
    pending_[v / 64] &= ~(1ull << (v % 64));
    notify(v);
  }
}

void MsixTable::notify(uint16_t vector) {
  if (!enabled_ || vector >= vectors_) return;
  if (masked(vector)) {
    pending_[vector / 64] |= 1ull << (vector % 64);
    return;
  }
  const uint8_t* e = table_.data() + size_t{vector} * kEntrySize;
  uint32_t lo, hi, data;
  std::memcpy(&lo, e, 4);
  std::memcpy(&hi, e + 4, 4);
  std::memcpy(&data, e + 8, 4);
  sink_.signal_msi(static_cast<uint64_t>(hi) << 32 | lo, data);
}

void MsixTable::save(persistence::Encoder& out) const {
  out.u16(vectors_);
  out.bytes(table_.data(), table_.size());
  for (uint64_t p : pending_) out.u64(p);
}

void MsixTable::restore(persistence::Decoder& in) {
  const uint16_t n = in.u16("MSI-X table size");
  if (n != vectors_) in.fail("MSI-X table size", fmt::format("is {}, this device has {} vectors", n, vectors_));
  in.bytes(table_.data(), table_.size(), "MSI-X table");
  for (auto& p : pending_) p = in.u64("MSI-X pending bits");
  if (vectors_ % 64 && (pending_.back() >> (vectors_ % 64)) != 0) in.fail("MSI-X pending bits", "name vectors past the table");
  for (uint16_t v = 0; v < vectors_; ++v) {
    const uint8_t* control = table_.data() + size_t{v} * kEntrySize + kVectorControl;
    if ((control[0] & ~kVectorMasked) || control[1] || control[2] || control[3])
      in.fail("MSI-X vector control", fmt::format("of vector {} has reserved bits set", v));
  }
}

}  // namespace nvhv::virtio
