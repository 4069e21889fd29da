#include "vmm/swap_dirty_map.hpp"

#include <fmt/core.h>

#include <bit>
#include <stdexcept>

namespace nvhv {
namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kPagesPerGranule = SwapDirtyMap::kGranule / kPage;
}  // namespace

SwapDirtyMap::SwapDirtyMap(uint64_t ram_size, std::vector<Slot> slots)
    : ram_size_(ram_size), slots_(std::move(slots)), granules_((ram_size / kGranule + 1 + 63) / 64, 0) {
  for (const Slot& s : slots_)
    if (s.ram_offset % kPage != 0 || s.size > ram_size_ || s.ram_offset > ram_size_ - s.size)
      throw std::invalid_argument(fmt::format("swap dirty map: slot {} ({} bytes at {}) is not inside guest RAM of {} bytes",
                                              s.slot, s.size, s.ram_offset, ram_size_));
}

void SwapDirtyMap::harvested(size_t slot, const uint64_t* words, size_t count) {
  const Slot* s = nullptr;
  for (const Slot& candidate : slots_)
    if (candidate.slot == slot) s = &candidate;
  if (!s) return;  // not guest RAM (a pmem region): not in the swap file
  const uint64_t pages = s->size / kPage;
  const uint64_t first_page = s->ram_offset / kPage;
  std::lock_guard lock(mu_);
  // The bitmap covers the slot's pages; bits past its end (none, from KVM) are ignored.
  for (size_t w = 0; w < count && w * 64 < pages; ++w) {
    for (uint64_t bits = words[w]; bits; bits &= bits - 1) {
      const uint64_t page = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
      if (page >= pages) break;
      const uint64_t g = (first_page + page) / kPagesPerGranule;
      granules_[g / 64] |= uint64_t{1} << (g % 64);
    }
  }
}

void SwapDirtyMap::harvest_failed(size_t slot) {
  std::lock_guard lock(mu_);
  if (broken_.empty())
    broken_ = fmt::format("reading KVM's dirty log of memory slot {} failed, so writes since the swap-in may be missing", slot);
}

std::optional<std::vector<bool>> SwapDirtyMap::chunks(uint64_t chunk_size) const {
  if (chunk_size < kGranule || chunk_size % kGranule != 0)
    throw std::invalid_argument(fmt::format("swap dirty map: chunk size {} is not a multiple of {}", chunk_size, kGranule));
  std::lock_guard lock(mu_);
  if (!broken_.empty()) return std::nullopt;
  const uint64_t per_chunk = chunk_size / kGranule;
  std::vector<bool> out((ram_size_ + chunk_size - 1) / chunk_size, false);
  const uint64_t granules = (ram_size_ + kGranule - 1) / kGranule;
  for (uint64_t g = 0; g < granules; ++g)
    if (granules_[g / 64] & (uint64_t{1} << (g % 64))) out[g / per_chunk] = true;
  return out;
}

std::string SwapDirtyMap::why() const {
  std::lock_guard lock(mu_);
  return broken_;
}

}  // namespace nvhv
