#pragma once
// The command-line side of swapping a VM out to ordinary storage and back (docs/swap-format.md):
//   nvhv swap-out guest.json --to FILE     -> swap_out_offline()
//   nvhv run guest.json --swap-in FILE     -> swap_in(), then the normal resume path
//   nvhv swap-in guest.json --from FILE    -> swap_in() alone; a later `nvhv run` resumes
// All print progress on stderr and the final figures in the log.
#include <filesystem>
#include <optional>
#include <string>

#include "vmm/config.hpp"

namespace nvhv {

struct SwapCommandOptions {
  int level = 1;          // zstd level
  unsigned threads = 0;   // 0: one per CPU
  bool force = false;     // overrides the refusals that protect a VM's only copy: recovery by hand
  bool show_progress = true;
  // swap-out: base of an incremental swap-out (default: the destination, when the VM came from it)
  std::optional<std::filesystem::path> previous;
};

// Swaps out the VM of `config`, which must be stopped with a committed checkpoint (its image
// lock tells whether nvhv is running it). Returns the exit status: 0 swapped out, 1 failed or
// refused (the VM stays where it was), 2 the config has no persistent image.
int swap_out_offline(const GuestConfig& config, const std::filesystem::path& to, const SwapCommandOptions& options);

// Restores the VM from swap file `from` into config.memory.backing as a resumable image. Returns
// 0 when the normal resume path can go on, else the exit status (1 refused or failed: the swap
// file is unchanged and still holds the VM; 2 the config has no persistent image).
int swap_in(const GuestConfig& config, const std::filesystem::path& from, const SwapCommandOptions& options);

// For `nvhv run` without --swap-in: why the config's backing cannot be run because it is
// swapped out or mid-swap (with what to do), or nullopt.
std::optional<std::string> swap_run_notice(const GuestConfig& config);

}  // namespace nvhv
