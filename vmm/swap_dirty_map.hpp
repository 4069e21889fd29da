#pragma once
// Which parts of guest RAM changed since the VM was swapped in, for an incremental swap-out that
// compresses only those (docs/swap-format.md, "Incremental swap-out"). It accumulates every page
// bitmap the dirty-page write-back harvests (KVM's dirty log plus device writes) into a map of
// 64 KiB granules, the smallest swap chunk, so that any chunk size can be asked for later.
//
// The map is only as good as its history: it must have seen every harvest from the moment RAM
// last equalled the swap file, and the Machine creates it only then (a resume of the checkpoint
// the swap-in committed, before any vCPU ran). A failed harvest makes it unusable for good.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/dirty_writeback.hpp"

namespace nvhv {

class SwapDirtyMap : public DirtyWriteback::Observer {
 public:
  static constexpr uint64_t kGranule = 64 * 1024;

  // A guest RAM range tracked by the write-back, as slot index and offset into guest RAM (the
  // image's RAM area, which the swap file's chunks divide).
  struct Slot {
    size_t slot;
    uint64_t ram_offset;
    uint64_t size;
  };
  SwapDirtyMap(uint64_t ram_size, std::vector<Slot> slots);

  void harvested(size_t slot, const uint64_t* words, size_t count) override;
  void harvest_failed(size_t slot) override;

  // Per chunk of `chunk_size` (a multiple of kGranule), whether any of its pages changed since
  // tracking began; nullopt once a harvest failed, with why() saying so.
  std::optional<std::vector<bool>> chunks(uint64_t chunk_size) const;
  std::string why() const;

 private:
  const uint64_t ram_size_;
  const std::vector<Slot> slots_;
  mutable std::mutex mu_;
  std::vector<uint64_t> granules_;  // bit g: granule g of guest RAM was written
  std::string broken_;              // why the map can no longer be trusted ("" while it can)
};

}  // namespace nvhv
