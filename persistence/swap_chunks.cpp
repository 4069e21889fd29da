// Reading a swap file's chunk data: verify() and restore(). The stored chunks are contiguous in
// RAM order, so they are read in batches of several MiB with one large read each, through O_DIRECT
// where the file system allows it (no copy through the page cache and no cache pollution by a file
// read once); each pool thread reads a batch and then checks, decompresses and writes its chunks,
// so reads of one batch overlap the work on another and every core is used. A page-cache target is
// written with O_DIRECT too: its page-cache write-back was the slowest part of a swap-in.
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/core.h>

#include "persistence/swap.hpp"
#include "persistence/swap_hash.hpp"
#include "persistence/swap_internal.hpp"
#include "persistence/swap_io.hpp"
#include "persistence/swap_pool.hpp"
#include "persistence/swap_sparse.hpp"
#include "vmm/base/fault_injection.hpp"

namespace nvhv::persistence {
namespace {

using namespace swapfmt;
using swapimpl::Clock;

// A batch ends before it would exceed either bound: reads stay large, and a mostly-zero or very
// compressible file still splits into enough batches to keep every thread busy.
constexpr uint64_t kBatchStored = 8u << 20;
constexpr uint64_t kBatchRaw = 32u << 20;
// Runs of non-zero pages at least this long are written with O_DIRECT; shorter ones through the
// page cache, whose write-back gathers scattered pages better than a synchronous write each.
constexpr uint64_t kDirectMinRun = 64 * 1024;

struct Batch {
  size_t first = 0, last = 0;   // chunks [first, last)
  uint64_t begin = 0, end = 0;  // their stored bytes in the file
};

std::vector<Batch> make_batches(const std::vector<ChunkEntry>& chunks, uint64_t chunk_size) {
  std::vector<Batch> out;
  Batch b;
  uint64_t raw = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkEntry& e = chunks[i];
    if (b.last > b.first && (b.end - b.begin + e.stored_length > kBatchStored || raw + chunk_size > kBatchRaw)) {
      out.push_back(b);
      b = Batch{};
      raw = 0;
    }
    if (b.last == b.first) b = Batch{i, i, e.offset, e.offset};
    b.last = i + 1;
    b.end = e.offset + e.stored_length;  // contiguous: checked by SwapFile::open
    raw += chunk_size;
  }
  if (b.last > b.first) out.push_back(b);
  return out;
}

// Per-thread buffers and decompression context of verify() and restore().
struct ChunkWorker {
  swapio::AlignedBuffer raw;   // one chunk of RAM, aligned: written with O_DIRECT
  swapio::AlignedBuffer body;  // a sparse chunk's non-zero pages, decompressed
  swapsparse::PageMap map;     // a sparse chunk's bitmap, or the pages a restore found non-zero
  swapimpl::DCtxPtr dctx;
};

[[noreturn]] void corrupt(const SwapFile& f, size_t i, const std::string& why) {
  throw SwapError(fmt::format("swap file {}: chunk {} is corrupt: {}", f.path(), i, why));
}

// Decompresses `length` stored bytes into exactly n bytes at `into`.
void decompress_exactly(const SwapFile& f, size_t i, const uint8_t* stored, uint64_t length, uint8_t* into, uint64_t n,
                        ChunkWorker& w) {
  if (!w.dctx) {
    w.dctx.reset(ZSTD_createDCtx());
    if (!w.dctx) throw std::bad_alloc();
  }
  const size_t r = ZSTD_decompressDCtx(w.dctx.get(), into, n, stored, length);
  if (ZSTD_isError(r) || r != n)
    corrupt(f, i, ZSTD_isError(r) ? std::string(ZSTD_getErrorName(r)) : fmt::format("{} bytes, expected {}", r, n));
}

// Decompresses chunk i (`n` bytes of RAM) into `into` and checks its RAM checksum.
void decompress(const SwapFile& f, size_t i, const uint8_t* stored, uint8_t* into, uint64_t n, ChunkWorker& w) {
  const ChunkEntry& e = f.chunks()[i];
  decompress_exactly(f, i, stored, e.stored_length, into, n, w);
  if (XXH3_64bits(into, n) != e.raw_checksum) corrupt(f, i, "RAM checksum mismatch after decompression");
}

// Parses sparse chunk i's bitmap into w.map; refuses one that cannot describe the chunk.
void read_bitmap(const SwapFile& f, size_t i, const uint8_t* stored, uint64_t n, ChunkWorker& w) {
  if (!swapsparse::parse_bitmap(stored, f.chunks()[i].stored_length, n / kPage, w.map))
    corrupt(f, i, "its page bitmap is invalid");
}

// A sparse chunk's non-zero pages, contiguous, with its bitmap parsed into w.map and the whole
// form checked against the RAM checksum.
const uint8_t* sparse_pages(const SwapFile& f, size_t i, const uint8_t* stored, uint64_t n, ChunkWorker& w) {
  const ChunkEntry& e = f.chunks()[i];
  read_bitmap(f, i, stored, n, w);
  const uint64_t bitmap = swapsparse::bitmap_bytes(w.map.pages);
  if (e.kind == kSparseRaw) {
    // Its stored checksum, already checked, is its RAM checksum (SwapFile::open).
    if (e.stored_length != w.map.sparse_bytes()) corrupt(f, i, "its length does not match its page bitmap");
    return stored + bitmap;
  }
  uint8_t* body = w.body.reserve(w.map.nonzero * kPage);
  decompress_exactly(f, i, stored + bitmap, e.stored_length - bitmap, body, w.map.nonzero * kPage, w);
  if (swapsparse::checksum_of_pages(w.map, body) != e.raw_checksum)
    corrupt(f, i, "RAM checksum mismatch after decompression");
  return body;
}

// Writes the non-zero pages of `chunk` (in runs, as `map` says) to the target at `offset`; the
// target reads as zero already, so a mostly-zero chunk costs a fraction of its size in I/O.
uint64_t write_nonzero_pages(int direct_fd, int fd, const std::string& what, const uint8_t* chunk,
                             const swapsparse::PageMap& map, uint64_t offset) {
  uint64_t written = 0;
  map.for_each_run([&](uint64_t first, uint64_t count) {
    const uint64_t at = first * kPage, run = count * kPage;
    if (run >= kDirectMinRun)
      swapio::write_span(direct_fd, fd, chunk + at, run, offset + at, what);
    else
      swapio::pwrite_full(fd, chunk + at, run, offset + at, what);
    written += run;
  });
  return written;
}

}  // namespace

// The batches verify() read, kept for restore(): one buffer per batch, released once restored.
struct SwapKeptChunks {
  std::vector<swapio::AlignedBuffer> buffers;
  std::vector<const uint8_t*> data;  // where each batch's first stored byte is in its buffer
};

namespace {

// Memory a swap-in may hold the chunk data in between its verify and restore passes: a quarter
// of what the kernel reports available, so that keeping it never pushes the host into reclaim.
uint64_t keep_budget() {
  uint64_t kib = 0;
  if (FILE* f = std::fopen("/proc/meminfo", "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %" SCNu64 " kB", &kib) == 1) break;
    std::fclose(f);
  }
  return kib * 1024 / 4;
}

}  // namespace

void SwapFile::for_each_chunk(unsigned threads, const std::function<void(size_t, const uint8_t*, unsigned)>& fn,
                              const std::function<void()>& tick, std::chrono::milliseconds interval, bool keep) const {
  const std::vector<Batch> batches = make_batches(chunks_, header_.chunk_size);
  std::shared_ptr<SwapKeptChunks> kept = std::exchange(kept_, nullptr);
  if (kept && kept->data.size() != batches.size()) kept.reset();
  std::shared_ptr<SwapKeptChunks> keeping;
  if (keep && trailer_.stored_bytes <= keep_budget()) {
    keeping = std::make_shared<SwapKeptChunks>();
    keeping->buffers.resize(batches.size());
    keeping->data.resize(batches.size(), nullptr);
  }
  // Direct reads: a page-cache copy of a file read once (twice at most) would only displace other
  // data. -1 when the file system refuses O_DIRECT: read_span then reads through the page cache.
  const UniqueFd direct = swapio::reopen_direct(fd_.get(), O_RDONLY);
  if (!direct) ::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  threads = static_cast<unsigned>(std::clamp<size_t>(threads, 1, std::max<size_t>(batches.size(), 1)));
  std::vector<swapio::AlignedBuffer> buffers(threads);
  auto work = [&](size_t k, unsigned w) {
    const Batch& b = batches[k];
    const uint8_t* data = nullptr;
    swapio::AlignedBuffer taken;  // a kept batch, freed when this one is done
    if (kept && kept->data[k]) {
      data = kept->data[k];
      taken = std::move(kept->buffers[k]);
    } else if (b.end > b.begin) {
      data = swapio::read_span(direct.get(), fd_.get(), b.begin, b.end - b.begin, keeping ? keeping->buffers[k] : buffers[w]);
      if (!data) fail(fmt::format("is truncated in chunks {}..{} (offset {})", b.first, b.last - 1, b.begin));
      if (keeping) keeping->data[k] = data;
    }
    for (size_t i = b.first; i < b.last; ++i) {
      const ChunkEntry& e = chunks_[i];
      const uint8_t* stored = e.kind == kZero ? nullptr : data + (e.offset - b.begin);
      if (stored) check_stored(i, stored);
      fn(i, stored, w);
    }
  };
  swappool::parallel_for(batches.size(), threads, work, tick, interval);
  kept_ = std::move(keeping);
}

SwapFigures SwapFile::file_figures(uint64_t bytes_scanned) const {
  SwapFigures f;
  f.ram_bytes = header_.ram_size;
  f.bytes_scanned = bytes_scanned;
  f.chunks = chunks_.size();
  for (const auto& e : chunks_) {
    f.zero_chunks += e.kind == kZero;
    f.compressed_chunks += e.kind == kZstd || e.kind == kSparseZstd;
    f.raw_chunks += e.kind == kRaw || e.kind == kSparseRaw;
    f.sparse_chunks += is_sparse(e.kind);
  }
  f.stored_bytes = trailer_.stored_bytes;
  f.file_bytes = file_size_;
  return f;
}

SwapFigures SwapFile::verify(bool decompress_too, const SwapTuning& tuning, bool keep_for_restore) const {
  const auto t0 = Clock::now();
  const unsigned threads = swappool::thread_count(tuning.threads);
  std::vector<ChunkWorker> workers(threads);
  std::atomic<uint64_t> done{0};
  auto work = [&](size_t i, const uint8_t* stored, unsigned w) {
    const uint64_t n = chunk_raw_size(i);
    ChunkWorker& cw = workers[w];
    if (decompress_too && chunks_[i].kind == kZstd) decompress(*this, i, stored, cw.raw.reserve(n), n, cw);
    // A sparse chunk's bitmap is checked even without decompression, so that a restore after
    // this check cannot find a chunk it cannot place.
    if (is_sparse(chunks_[i].kind)) {
      if (decompress_too || chunks_[i].kind == kSparseRaw)
        sparse_pages(*this, i, stored, n, cw);
      else
        read_bitmap(*this, i, stored, n, cw);
    }
    done += n;
  };
  auto tick = [&] {
    if (tuning.progress) tuning.progress({"verify", done.load(), header_.ram_size, swapimpl::seconds_since(t0)});
  };
  for_each_chunk(threads, work, tick, tuning.progress_interval, keep_for_restore);
  SwapFigures f = file_figures(done);
  f.seconds = swapimpl::seconds_since(t0);
  tick();
  return f;
}

SwapFigures SwapFile::restore(Backing& target, uint64_t ram_offset, bool known_zero, const SwapTuning& tuning) const {
  const auto t0 = Clock::now();
  if (ram_offset + header_.ram_size > target.size())
    throw std::invalid_argument(fmt::format("{} is too small to restore {} bytes of RAM at {}", target.path(),
                                            header_.ram_size, ram_offset));
  // Page-cache files take large writes (cheaper than faulting in every page of the mapping), with
  // O_DIRECT where allowed; DAX and memory are written through the mapping and flushed per chunk.
  const bool by_write = target.kind() == BackingKind::file && target.fd() >= 0;
  const UniqueFd direct = by_write ? swapio::reopen_direct(target.fd(), O_WRONLY) : UniqueFd();
  uint8_t* ram = target.data() + ram_offset;
  const unsigned threads = swappool::thread_count(tuning.threads);
  std::vector<ChunkWorker> workers(threads);
  std::atomic<uint64_t> done{0}, written{0};
  std::atomic<size_t> finished{0};
  const size_t half = chunks_.size() / 2;
  auto work = [&](size_t i, const uint8_t* stored, unsigned w) {
    const ChunkEntry& e = chunks_[i];
    const uint64_t n = chunk_raw_size(i);
    const uint64_t at = i * uint64_t{header_.chunk_size};
    uint8_t* dest = ram + at;
    ChunkWorker& cw = workers[w];
    if (e.kind == kZero) {
      if (!known_zero && !swapimpl::is_zero(dest, n)) {
        std::memset(dest, 0, n);
        if (!by_write) target.flush(dest, n);
        written += n;
      }
    } else if (by_write) {
      const uint8_t* out = stored;
      bool mapped = false;  // cw.map holds the chunk's non-zero pages
      if (e.kind == kZstd) {
        out = cw.raw.reserve(n);
        decompress(*this, i, stored, cw.raw.data(), n, cw);
      } else if (is_sparse(e.kind)) {
        const uint8_t* pages = sparse_pages(*this, i, stored, n, cw);
        out = cw.raw.reserve(n);
        swapsparse::scatter(pages, cw.map, cw.raw.data(), !known_zero);
        mapped = true;
      } else if (direct && reinterpret_cast<uintptr_t>(stored) % swapio::kDirectAlign != 0) {
        out = static_cast<const uint8_t*>(std::memcpy(cw.raw.reserve(n), stored, n));  // O_DIRECT needs it aligned
      }
      if (known_zero) {
        if (!mapped) swapsparse::scan(out, n, cw.map);
        written += write_nonzero_pages(direct.get(), target.fd(), target.path(), out, cw.map, ram_offset + at);
      } else {
        swapio::write_span(direct.get(), target.fd(), out, n, ram_offset + at, target.path());
        written += n;
      }
    } else {
      if (e.kind == kZstd)
        decompress(*this, i, stored, dest, n, cw);
      else if (is_sparse(e.kind))
        swapsparse::scatter(sparse_pages(*this, i, stored, n, cw), cw.map, dest, !known_zero);
      else
        std::memcpy(dest, stored, n);
      target.flush(dest, n);
      written += n;
    }
    done += n;
    if (finished.fetch_add(1) + 1 == half) fault_point("swap-in:mid-ram");
  };
  auto tick = [&] {
    if (tuning.progress) tuning.progress({"swap-in", done.load(), header_.ram_size, swapimpl::seconds_since(t0)});
  };
  for_each_chunk(threads, work, tick, tuning.progress_interval, false);
  if (by_write) {
    target.persist(ram, header_.ram_size);  // msync: writes back the range, however it was dirtied
    // Direct writes leave nothing in the page cache for msync to see; the file's block allocation
    // (unwritten extents turned written) still has to reach the journal.
    if (direct) swapio::fsync_or_throw(target.fd(), target.path());
  } else {
    target.drain();
  }
  SwapFigures f = file_figures(done);
  f.written_bytes = written;
  f.seconds = swapimpl::seconds_since(t0);
  tick();
  return f;
}

}  // namespace nvhv::persistence
