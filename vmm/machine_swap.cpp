// The swap half of Machine: vm.swap_out, and the record of what the guest wrote since it was
// swapped in, which lets that swap-out compress only the chunks that changed.
#include <fmt/core.h>

#include "persistence/swap_image.hpp"
#include "vmm/base/log.hpp"
#include "vmm/machine.hpp"

namespace nvhv {

void Machine::track_swap_dirty_pages(uint64_t generation) {
  const uint64_t origin = image_->swap_record().origin_id;
  if (origin == 0) return;  // never swapped in: no swap file to compare RAM with
  // RAM equals the swap file only at the checkpoint the swap-in committed, the image's first
  // (the swap-in formats it); any later one was taken after the guest ran unobserved.
  if (generation != 1) {
    swap_dirty_note_ = fmt::format("the VM resumed checkpoint gen={}, not the one its swap-in from swap file {:016x} "
                                   "committed, so what changed since the swap-in is unknown",
                                   generation, origin);
    return;
  }
  if (!writeback_) {
    swap_dirty_note_ = "guest RAM is not dirty-logged on this backing (its stores are durable without write-back)";
    return;
  }
  std::vector<SwapDirtyMap::Slot> ram_slots;
  const uint8_t* ram = memory_->host_base();
  const auto& slots = writeback_->slots();
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i].host >= ram && slots[i].host < ram + memory_->size())
      ram_slots.push_back({i, static_cast<uint64_t>(slots[i].host - ram), slots[i].size});
  swap_dirty_ = std::make_unique<SwapDirtyMap>(memory_->size(), std::move(ram_slots));
  writeback_->set_observer(swap_dirty_.get());
  log::debug("tracking the pages written since the swap-in from swap file {:016x}", origin);
}

Machine::SwapOutReport Machine::swap_out(const std::string& path, int level, bool verify_clean,
                                         std::function<void(uint64_t, uint64_t)> progress) {
  SwapOutReport report;
  // Its final write-back pass also hands the last dirty pages to swap_dirty_.
  report.checkpoint = power_fail_checkpoint(/*exit_after=*/false);
  // From here the VM lives in its committed checkpoint: whatever happens to the swap-out, the
  // guest does not run again in this process.
  persistence::SwapOutOptions o;
  o.tuning.level = level;
  if (progress) o.tuning.progress = [progress](const persistence::SwapProgress& p) { progress(p.done_bytes, p.total_bytes); };
  o.previous = options_.swapped_in_from;
  std::optional<std::vector<bool>> dirty;
  std::string no_map = swap_dirty_note_;
  if (swap_dirty_) {
    dirty = swap_dirty_->chunks(o.tuning.chunk_size);
    if (!dirty) no_map = swap_dirty_->why();
  }
  if (dirty) o.dirty_chunks = &*dirty;
  o.verify_clean_chunks = verify_clean;
  announce("swapping-out", path);
  try {
    auto r = persistence::swap_out_image(*image_, path, o);
    report.swap_id = r.swap_id;
    report.incremental = r.incremental;
    report.released = r.released;
    report.figures = r.figures.summary();
    report.numbers = r.figures;
    if (r.incremental && !r.figures.dirty_map)
      report.no_dirty_map = no_map.empty() ? "its base is not the swap file the VM was swapped in from" : no_map;
    log::info("swapped out to {} (swap file {:016x}{}): {}", path, r.swap_id, r.incremental ? ", incremental" : "", r.released);
    log::info("swap-out figures: {}", report.figures);
    if (!report.no_dirty_map.empty())
      log::info("swap-out without a dirty map, every chunk compared by checksum: {}", report.no_dirty_map);
  } catch (...) {
    request_exit(0, "vm.swap_out failed after the checkpoint committed: the VM stays in its image");
    throw;
  }
  return report;
}

}  // namespace nvhv
