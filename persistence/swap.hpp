#pragma once
// The swap engine: a VM's committed checkpoint and guest RAM written to a swap file on ordinary
// storage, and read back (docs/swap-format.md). This file is the file format level: writing a
// complete swap file durably under its final name, and opening, verifying and restoring one.
// swap_image.hpp builds the crash-safe swap-out / swap-in of an image on top of it.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "persistence/backing.hpp"
#include "persistence/swap_format.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::persistence {

// A swap file cannot be used: missing, not a swap file, truncated, corrupt, another VM's, already
// consumed. what() names the file and what is wrong; nothing was written.
class SwapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Another process holds the swap file's lock: a swap-in or swap-out of it is under way.
class SwapBusyError : public SwapError {
 public:
  using SwapError::SwapError;
};

struct SwapProgress {
  const char* phase;      // "swap-out", "verify", "swap-in"
  uint64_t done_bytes;    // of guest RAM handled so far
  uint64_t total_bytes;
  double seconds;         // since the phase started
};
using SwapProgressFn = std::function<void(const SwapProgress&)>;

// What one pass over a swap file did.
struct SwapFigures {
  uint64_t ram_bytes = 0;
  uint64_t bytes_scanned = 0;       // guest RAM read (swap-out) or restored (swap-in)
  uint64_t chunks = 0;
  uint64_t zero_chunks = 0;
  uint64_t compressed_chunks = 0;   // stored zstd-compressed (swap-out: compressed now)
  uint64_t raw_chunks = 0;          // stored as they are (compression did not help)
  uint64_t sparse_chunks = 0;       // of the compressed and raw ones: partly zero, only their non-zero pages stored
  uint64_t reused_chunks = 0;       // incremental: stored bytes copied from the base file
  uint64_t rewritten_chunks = 0;    // made from RAM in this pass (all but the reused ones)
  bool dirty_map = false;           // incremental: a dirty map said which chunks changed
  bool clean_verified = false;      // ... and chunks it called clean were compared with the base
  uint64_t marked_dirty_chunks = 0; // incremental: chunks the dirty map marked changed
  uint64_t dirty_map_misses = 0;    // incremental: marked clean but changed, so written anew
  uint64_t ram_read_bytes = 0;      // swap-out: guest RAM examined (hashed or compressed), holes included
  uint64_t hole_bytes = 0;          // swap-out: of ram_read_bytes, holes in the backing file, known zero unread
  uint64_t compressed_input_bytes = 0;  // RAM bytes that went through the compressor
  uint64_t stored_bytes = 0;        // chunk bytes in the swap file
  uint64_t written_bytes = 0;       // bytes this pass wrote (file or target RAM)
  uint64_t file_bytes = 0;          // size of the swap file
  double seconds = 0;

  double mb_per_s() const { return seconds > 0 ? double(bytes_scanned) / 1e6 / seconds : 0; }
  // One line: "1024 MiB of RAM scanned in 512 chunks: 400 zero, ...; 123.0 MiB stored (ratio
  // 8.3); ...; 812 MB/s; 1.32 s", and for an incremental swap-out what was reused, rewritten and
  // what the dirty map decided.
  std::string summary() const;
};

struct SwapTuning {
  int level = 1;                     // zstd level; 1 is fast, higher compresses more
  unsigned threads = 0;              // compression/decompression threads; 0: one per CPU (at most 8)
  uint32_t chunk_size = 2u << 20;    // swap-out only: power of two, 64 KiB .. 64 MiB
  SwapProgressFn progress;           // called about every progress_interval, and once at the end
  std::chrono::milliseconds progress_interval{100};
};

// Everything a swap file holds.
struct SwapSource {
  std::span<const uint8_t> ram;
  std::span<const uint8_t> state;    // encoded committed checkpoint payload
  nlohmann::json identity;           // the VM identity (canonicalised when written)
  uint32_t vcpus = 0;
  uint64_t saved_realtime_ns = 0;
  uint64_t generation = 0;
  // The descriptor `ram` is mapped from, at this offset: when it is a regular file, its holes
  // read as zero and are not read (swap_holes.hpp). -1: every page is read.
  int holes_fd = -1;
  uint64_t ram_file_offset = 0;
};

class SwapFile;
class PendingSwapFile;
struct SwapBase;
PendingSwapFile write_swap_file(const std::filesystem::path& path, const SwapSource& src, uint64_t swap_id,
                                const SwapTuning& tuning, const SwapBase* base = nullptr);

// Incremental swap-out: chunks not marked dirty are taken from `file` by copying their stored
// bytes (no recompression), provided the RAM still matches the chunk's checksum there (checked
// unless verify_clean is false; when checked, a wrong dirty map cannot produce a wrong swap file).
// Chunks marked dirty are compressed anew without a comparison. With a dirty map and verify_clean
// false, clean chunks are not read from RAM at all: the map must then be complete.
struct SwapBase {
  const SwapFile* file = nullptr;
  const std::vector<bool>* dirty_chunks = nullptr;  // null: every chunk is checked by checksum
  bool verify_clean = true;
};

// A complete swap file written and fsynced under a temporary name beside its final one; publish()
// renames it into place and makes the rename durable. Destroyed unpublished, it is removed.
class PendingSwapFile {
 public:
  PendingSwapFile(PendingSwapFile&&) noexcept;
  PendingSwapFile& operator=(PendingSwapFile&&) = delete;
  ~PendingSwapFile();

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& path() const { return final_; }
  uint64_t swap_id() const { return swap_id_; }
  const SwapFigures& figures() const { return figures_; }
  void publish();

 private:
  friend PendingSwapFile write_swap_file(const std::filesystem::path&, const SwapSource&, uint64_t,
                                         const SwapTuning&, const SwapBase*);
  PendingSwapFile() = default;
  std::filesystem::path temp_, final_;
  UniqueFd fd_;  // holds the temp file's lock until published
  uint64_t swap_id_ = 0;
  SwapFigures figures_;
  bool published_ = false;
};

// Temporary name a swap file to `path` is written under (same directory, so rename is atomic).
std::filesystem::path swap_temp_path(const std::filesystem::path& path);

// write_swap_file (declared above): writes `src` as swap file `swap_id` to swap_temp_path(path)
// and fsyncs it. Throws SwapError if another swap-out is writing to the same path or the base does
// not fit, SystemError on I/O errors; the temp file is then removed.

struct SwapConsumed {
  uint64_t at_ns = 0;          // 0: not consumed
  std::string target;          // where the swap-in put the VM (empty if unreadable)
  uint64_t target_path_hash = 0;
};

struct SwapKeptChunks;

class SwapFile {
 public:
  enum class Mode {
    read,    // shared lock, read-only
    update,  // exclusive lock, read-write: swap-in (marks it consumed), or replacing it
  };
  // Opens and checks everything but the chunk data: header, trailer, chunk table, identity text
  // and state checksum. Throws SwapError naming what is wrong (a lock held by another process
  // included); reads only.
  static SwapFile open(const std::filesystem::path& path, Mode mode);
  // The same checks on an already open descriptor (fuzzing, tests); takes no lock.
  static SwapFile from_fd(UniqueFd fd, std::string name);

  SwapFile(SwapFile&&) noexcept;
  SwapFile& operator=(SwapFile&&) noexcept;
  ~SwapFile();

  const std::string& path() const { return path_; }
  const swapfmt::Header& header() const { return header_; }
  uint64_t swap_id() const { return header_.swap_id; }
  const std::string& identity() const { return identity_; }  // canonical JSON text
  std::span<const uint8_t> state() const { return state_; }
  const std::vector<swapfmt::ChunkEntry>& chunks() const { return chunks_; }
  uint64_t stored_bytes() const { return trailer_.stored_bytes; }
  uint64_t file_size() const { return file_size_; }
  uint64_t chunk_raw_size(size_t i) const;
  const SwapConsumed& consumed() const { return consumed_; }

  // Throws SwapError listing every difference from what the caller will restore into.
  void check_matches(const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus) const;

  // Reads every stored chunk and checks its stored checksum; with `decompress` also decompresses
  // it and checks the RAM checksum. Throws SwapError naming the first bad chunk. With
  // keep_for_restore the chunk data read stays in memory for the restore() that follows, when it
  // fits (a quarter of the memory available), so that a swap-in reads the file only once.
  SwapFigures verify(bool decompress, const SwapTuning& tuning, bool keep_for_restore = false) const;

  // Writes every chunk into guest RAM at `ram_offset` of `target`, checking both checksums, and
  // makes it durable. known_zero: the target RAM reads as zero already, so zero chunks are skipped.
  // Throws SwapError on a bad chunk (target RAM then partly written).
  SwapFigures restore(Backing& target, uint64_t ram_offset, bool known_zero, const SwapTuning& tuning) const;

  // Reads chunk i's stored bytes into `out` (stored_length bytes), checking the stored checksum.
  void read_stored(size_t i, uint8_t* out) const;

  // Durably records that a swap-in took the VM to `target` (mode update only): the path first,
  // then the single store of the time that makes it consumed.
  void mark_consumed(const std::string& target);

 private:
  SwapFile() = default;
  void load();
  [[noreturn]] void fail(const std::string& problem) const;
  // What this file holds (chunk kinds, sizes), with the bytes a pass scanned: common to
  // verify() and restore().
  SwapFigures file_figures(uint64_t bytes_scanned) const;
  // Throws SwapError naming chunk i unless `stored` holds its stored bytes (checksum).
  void check_stored(size_t i, const uint8_t* stored) const;
  // Runs fn(i, stored bytes or nullptr for a zero chunk, worker) for every chunk on `threads`
  // threads, after checking the stored checksum; the stored bytes are read in large batches, or
  // taken from what verify() kept (swap_chunks.cpp). tick() runs on the calling thread every
  // `interval` meanwhile. With `keep` the batches read are kept for the next call.
  void for_each_chunk(unsigned threads, const std::function<void(size_t, const uint8_t*, unsigned)>& fn,
                      const std::function<void()>& tick, std::chrono::milliseconds interval, bool keep) const;

  std::string path_;
  UniqueFd fd_;
  bool writable_ = false;
  uint64_t file_size_ = 0;
  swapfmt::Header header_{};
  swapfmt::Trailer trailer_{};
  std::string identity_;
  std::vector<uint8_t> state_;
  std::vector<swapfmt::ChunkEntry> chunks_;
  SwapConsumed consumed_;
  mutable std::shared_ptr<SwapKeptChunks> kept_;  // chunk data verify() read for restore()
};

}  // namespace nvhv::persistence
