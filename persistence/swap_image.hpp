#pragma once
// Swapping a VM image out to a swap file and back, crash-safely (docs/swap-format.md, "Moving a
// VM"): at every instant either the image or the swap file is complete, at most one of them is
// the VM's live copy, and an interrupted swap is finished by running the same command again.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "persistence/image.hpp"
#include "persistence/swap.hpp"

namespace nvhv::persistence {

struct SwapOutOptions {
  SwapTuning tuning;
  // Incremental swap-out: the swap file this image was swapped in from (default: the destination
  // itself when it is that file). Chunks it holds unchanged are copied instead of compressed.
  std::optional<std::filesystem::path> previous;
  // Per chunk of tuning.chunk_size, true when the guest wrote it since the swap-in from
  // `previous` (KVM's dirty log). Null: unknown; every chunk is then compared by checksum. It is
  // used only when `previous` is the file the image was swapped in from (its origin).
  const std::vector<bool>* dirty_chunks = nullptr;
  // Compare chunks the map calls clean with the previous file's checksum anyway (a hash pass over
  // them, cheap next to compression), so a stale or wrong map can never produce a wrong swap file.
  // False trusts the map: clean chunks are copied without reading RAM.
  bool verify_clean_chunks = true;
  // Before the swap file can hold the VM it is reopened and its header, trailer, chunk table,
  // identity and state are read back and checked; with read_back every chunk is read back from
  // the file and checked too (a second pass over the whole file).
  bool read_back = false;
  // Replace a destination that is not a consumed swap file of any VM (it may be a VM's only copy).
  bool force = false;
};

struct SwapOutResult {
  uint64_t swap_id = 0;
  bool incremental = false;
  bool resumed_interrupted = false;  // an earlier, interrupted swap-out was finished
  bool already_done = false;         // it had finished already: nothing was written
  SwapFigures figures;
  std::string released;              // what happened to the image, for the operator
  double file_seconds = 0;           // writing the swap file durably into place
  double release_seconds = 0;        // releasing the image's storage afterwards
};

// Swaps out the VM of `image`, which must hold a committed, unconsumed checkpoint with the VM
// stopped (the caller holds the backing's lock): writes and verifies the swap file under a temp
// name, marks the image outgoing, renames the file into place, then releases the image. A regular
// file backing is then truncated to its 64 KiB header area (identity and swap record kept); any
// other backing keeps its size, with its checkpoint marked consumed. `image` must not be used
// afterwards. Throws SwapError / ImageError with nothing changed when refused.
SwapOutResult swap_out_image(Image& image, const std::filesystem::path& to, const SwapOutOptions& options);

struct SwapInOptions {
  SwapTuning tuning;
  // Swap in a file already consumed by a finished swap-in, or write over a backing that holds
  // another image: for recovery by hand only, it can run a VM twice.
  bool force = false;
};

struct SwapInResult {
  uint64_t swap_id = 0;
  bool already_done = false;  // the target already holds the VM from this file: nothing written
  uint64_t generation = 0;  // of the checkpoint committed into the target
  SwapFigures verify;       // the check of every chunk before anything was written
  SwapFigures restore;
};

// Restores the VM in swap file `from` into a new image on the backing at `target` (created or
// grown as needed; a regular file, a DAX file or a device-DAX node): verifies the swap file, marks
// the target incoming, formats it, restores RAM, commits the state as a resumable checkpoint,
// marks the swap file consumed and publishes the image. On return the normal resume path
// continues the guest. Throws SwapError when refused (nothing written then).
SwapInResult swap_in_image(const std::filesystem::path& from, const std::filesystem::path& target,
                           const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus,
                           const SwapInOptions& options);

// The swap file id when the image backing at `image_path` was already swapped out to the swap
// file `to`, which still holds the VM: a swap-out that finished (read without locking or writing;
// regular files only, as the swapped-out file is too small to open as a backing).
std::optional<uint64_t> finished_swap_out(const std::filesystem::path& image_path, const std::filesystem::path& to);

// Operator-facing reason why the backing at `path` cannot simply be run, when it is mid-swap or
// swapped out (read without locking or changing anything); nullopt when not.
std::optional<std::string> swap_state_notice(const std::filesystem::path& path);

// Every fault_point() name on the swap paths, in the order they are reached (tests).
extern const std::vector<std::string> kSwapOutFaultPoints;
extern const std::vector<std::string> kSwapInFaultPoints;

}  // namespace nvhv::persistence
