// Writing a swap file: chunks are scanned for zero pages, hashed and compressed on the pool's
// threads while the calling thread writes them in RAM order with large sequential writes; table
// and trailer last, then fsync. Nothing has the final name until PendingSwapFile::publish().
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include <fmt/core.h>

#include "persistence/identity.hpp"
#include "persistence/swap.hpp"
#include "persistence/swap_hash.hpp"
#include "persistence/swap_holes.hpp"
#include "persistence/swap_internal.hpp"
#include "persistence/swap_io.hpp"
#include "persistence/swap_pool.hpp"
#include "persistence/swap_sparse.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/fault_injection.hpp"
#include "vmm/base/log.hpp"
#include "vmm/base/wall_clock.hpp"

namespace nvhv::persistence {
namespace {

using namespace swapfmt;
using swapimpl::Clock;

// Compression has to save at least this share of a chunk to be worth a decompression on swap-in.
constexpr uint64_t kMinSavingDivisor = 32;
// Pieces of a chunk compressed first to tell whether the whole chunk is worth compressing.
constexpr size_t kProbePieces = 4;
constexpr size_t kProbePiece = 16 * 1024;

struct Compressor {
  swapimpl::CCtxPtr cctx;
  std::vector<uint8_t> probe_in, probe_out, sparse_out;
  swapsparse::PageMap map;
  std::vector<swapsparse::PageRun> data;  // the chunk's pages that are not holes
};

// Random data does not compress, and zstd spends most of a chunk's time finding that out: a
// sample of pieces spread over the chunk decides first, so incompressible RAM costs a small
// share of the CPU (and a chunk that only looks incompressible is merely stored raw).
bool worth_compressing(Compressor& c, const uint8_t* raw, size_t n, int level) {
  if (n < 4 * kProbePieces * kProbePiece) return true;
  c.probe_in.resize(kProbePieces * kProbePiece);
  for (size_t i = 0; i < kProbePieces; ++i)
    std::memcpy(c.probe_in.data() + i * kProbePiece, raw + i * (n / kProbePieces), kProbePiece);
  c.probe_out.resize(ZSTD_compressBound(c.probe_in.size()));
  const size_t r = ZSTD_compressCCtx(c.cctx.get(), c.probe_out.data(), c.probe_out.size(), c.probe_in.data(),
                                     c.probe_in.size(), level);
  return !ZSTD_isError(r) && r <= c.probe_in.size() - c.probe_in.size() / kMinSavingDivisor;
}

struct OutSlot {
  uint32_t kind = kZero;
  const uint8_t* data = nullptr;
  uint32_t length = 0;
  uint64_t stored_checksum = 0;
  uint64_t raw_checksum = 0;
  bool reused = false;
  bool marked_dirty = false;
  bool miss = false;
  bool compressed_now = false;
  bool ram_read = false;
  uint64_t hole_bytes = 0;
  std::vector<uint8_t> buf;
};

// A partly-zero chunk in its sparse form: the bitmap, then the non-zero pages as they are or as
// one zstd frame when that saves enough; only those pages are hashed and compressed.
void store_sparse(Compressor& c, const uint8_t* raw, OutSlot& o, int level) {
  const uint64_t bitmap = swapsparse::bitmap_bytes(c.map.pages), pages = c.map.nonzero * kPage;
  o.buf.resize(bitmap + pages);
  swapsparse::gather(raw, c.map, o.buf.data());
  o.data = o.buf.data();
  const uint8_t* body = o.buf.data() + bitmap;
  if (worth_compressing(c, body, pages, level)) {
    c.sparse_out.resize(ZSTD_compressBound(pages));
    const size_t z = ZSTD_compressCCtx(c.cctx.get(), c.sparse_out.data(), c.sparse_out.size(), body, pages, level);
    if (!ZSTD_isError(z) && z <= pages - pages / kMinSavingDivisor) {
      std::memcpy(o.buf.data() + bitmap, c.sparse_out.data(), z);
      o.kind = kSparseZstd;
      o.length = static_cast<uint32_t>(bitmap + z);
      o.stored_checksum = XXH3_64bits(o.data, o.length);
      return;
    }
  }
  o.kind = kSparseRaw;
  o.length = static_cast<uint32_t>(bitmap + pages);
  o.stored_checksum = o.raw_checksum;  // the stored bytes are the sparse form itself
}

// Maps a chunk of guest RAM in one call instead of a page fault per page (costly under nested
// virtualisation); purely an optimisation, so failure (an older kernel) is ignored.
void populate(const uint8_t* p, size_t n) {
#ifdef MADV_POPULATE_READ
  const auto page = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kPage - 1};
  ::madvise(reinterpret_cast<void*>(page), n + (reinterpret_cast<uintptr_t>(p) - page), MADV_POPULATE_READ);
#else
  (void)p;
  (void)n;
#endif
}

// The RAM checksum a chunk of this content is stored with: of its bytes when none of its pages is
// zero, of its sparse form when some are (0 when all are).
uint64_t ram_checksum(const uint8_t* raw, uint64_t n, const swapsparse::PageMap& map) {
  if (map.nonzero == 0) return 0;
  return map.nonzero == map.pages ? XXH3_64bits(raw, n) : swapsparse::checksum(raw, map);
}

// Whether a stored chunk of `kind` can hold RAM whose non-zero pages are `map`.
bool same_shape(uint32_t kind, const swapsparse::PageMap& map) {
  if (map.nonzero == 0) return kind == kZero;
  if (map.nonzero == map.pages) return kind == kRaw || kind == kZstd;
  return is_sparse(kind);
}

void check_inputs(const SwapSource& src, const SwapTuning& t, const std::string& canonical) {
  if (t.chunk_size < kMinChunk || t.chunk_size > kMaxChunk || !std::has_single_bit(t.chunk_size))
    throw std::invalid_argument(fmt::format("swap chunk size {} is not a power of two between {} and {}", t.chunk_size,
                                            kMinChunk, kMaxChunk));
  if (t.level < ZSTD_minCLevel() || t.level > ZSTD_maxCLevel())
    throw std::invalid_argument(
        fmt::format("compression level {} is outside {}..{}", t.level, ZSTD_minCLevel(), ZSTD_maxCLevel()));
  if (src.ram.empty() || src.ram.size() % kPage != 0 || src.ram.size() > kMaxRam)
    throw std::invalid_argument(fmt::format("guest RAM of {} bytes cannot be swapped", src.ram.size()));
  if (src.state.size() > kMaxState)
    throw std::invalid_argument(fmt::format("machine state of {} bytes exceeds {}", src.state.size(), kMaxState));
  if (canonical.size() > kMaxIdentity)
    throw std::invalid_argument(fmt::format("VM identity of {} bytes exceeds {}", canonical.size(), kMaxIdentity));
}

}  // namespace

std::string SwapFigures::summary() const {
  const double ratio = stored_bytes ? double(ram_bytes) / double(stored_bytes) : 0.0;
  std::string incremental;
  if (reused_chunks || dirty_map) {
    incremental = fmt::format("; incremental: {} reused, {} rewritten, {} MiB of RAM read", reused_chunks,
                              rewritten_chunks, ram_read_bytes >> 20);
    if (dirty_map && clean_verified)
      incremental += fmt::format("; dirty map: {} chunks marked dirty, the clean ones verified, {} misses",
                                 marked_dirty_chunks, dirty_map_misses);
    else if (dirty_map)
      incremental += fmt::format("; dirty map: {} chunks marked dirty, the clean ones copied unread", marked_dirty_chunks);
  }
  const std::string holes = hole_bytes ? fmt::format(" ({} MiB of it holes, not read)", hole_bytes >> 20) : "";
  return fmt::format("{} MiB of RAM scanned{} in {} chunks: {} zero, {} compressed, {} raw, {} reused, {} sparse; "
                     "{:.1f} MiB stored (ratio {:.1f}); {:.1f} MiB written; {:.0f} MB/s; {:.2f} s{}",
                     bytes_scanned >> 20, holes, chunks, zero_chunks, compressed_chunks, raw_chunks, reused_chunks,
                     sparse_chunks, double(stored_bytes) / (1 << 20), ratio, double(written_bytes) / (1 << 20),
                     mb_per_s(), seconds, incremental);
}

std::filesystem::path swap_temp_path(const std::filesystem::path& path) {
  std::filesystem::path t = path;
  t += ".partial";
  return t;
}

PendingSwapFile::PendingSwapFile(PendingSwapFile&& o) noexcept
    : temp_(std::move(o.temp_)),
      final_(std::move(o.final_)),
      fd_(std::move(o.fd_)),
      swap_id_(o.swap_id_),
      figures_(o.figures_),
      published_(std::exchange(o.published_, true)) {}

PendingSwapFile::~PendingSwapFile() {
  if (!published_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void PendingSwapFile::publish() {
  if (published_) return;
  if (::rename(temp_.c_str(), final_.c_str()) != 0)
    throw SystemError(errno, fmt::format("rename {} to {}", temp_.string(), final_.string()));
  published_ = true;
  fault_point("swap-out:after-rename");
  swapio::fsync_directory(final_.parent_path());
  fault_point("swap-out:after-dir-fsync");
  fd_.reset();
}

PendingSwapFile write_swap_file(const std::filesystem::path& path, const SwapSource& src, uint64_t swap_id,
                                const SwapTuning& tuning, const SwapBase* base) {
  const auto t0 = Clock::now();
  const std::string canonical = canonical_identity(src.identity);
  check_inputs(src, tuning, canonical);
  const uint64_t cs = tuning.chunk_size;
  const uint64_t ram_size = src.ram.size();
  const uint64_t count = (ram_size + cs - 1) / cs;
  if (base && base->file) {
    const Header& bh = base->file->header();
    if (bh.ram_size != ram_size || bh.chunk_size != cs || base->file->identity() != canonical)
      throw SwapError(fmt::format("swap file {} cannot be the base of this swap-out: its RAM size, chunk size or VM "
                                  "identity differ",
                                  base->file->path()));
    if (base->dirty_chunks && base->dirty_chunks->size() != count)
      throw std::invalid_argument(
          fmt::format("dirty chunk map has {} entries, the VM has {} chunks", base->dirty_chunks->size(), count));
  }
  const SwapFile* base_file = base ? base->file : nullptr;

  PendingSwapFile out;
  out.final_ = path;
  out.temp_ = swap_temp_path(path);
  out.swap_id_ = swap_id;
  const std::string temp_name = out.temp_.string();
  out.fd_.reset(::open(temp_name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!out.fd_) {
    out.published_ = true;  // nothing of ours to remove
    throw SystemError(errno, fmt::format("create {}", temp_name));
  }
  if (!swapio::try_lock(out.fd_.get(), true)) {
    out.published_ = true;  // another swap-out's file: not ours to remove
    throw SwapError(fmt::format("another swap-out is writing {} (it holds the lock on {})", path.string(), temp_name));
  }
  // A temp file left by an interrupted swap-out never had the final name: it is garbage.
  if (::ftruncate(out.fd_.get(), 0) != 0) throw SystemError(errno, fmt::format("truncate {}", temp_name));
  fault_point("swap-out:after-temp-create");

  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.format_version = kFormatVersion;
  h.header_size = sizeof h;
  h.swap_id = swap_id;
  h.created_realtime_ns = realtime_ns();
  h.ram_size = ram_size;
  h.vcpus = src.vcpus;
  h.chunk_size = tuning.chunk_size;
  h.chunk_count = count;
  h.identity_length = static_cast<uint32_t>(canonical.size());
  h.compression_level = tuning.level;
  h.identity_hash = identity_hash(canonical);
  h.identity_offset = kIdentityOffset;
  h.state_offset = round_up(kIdentityOffset + canonical.size(), kPage);
  h.state_length = src.state.size();
  h.state_checksum = XXH3_64bits(src.state.data(), src.state.size());
  h.saved_realtime_ns = src.saved_realtime_ns;
  h.generation = src.generation;
  h.base_swap_id = base_file ? base_file->swap_id() : 0;
  h.data_offset = round_up(h.state_offset + h.state_length, kPage);
  h.checksum = header_checksum(h);

  swapio::SequentialWriter w(out.fd_.get(), temp_name, temp_name);
  w.append(&h, sizeof h);
  w.pad_to(kIdentityOffset);
  w.append(canonical.data(), canonical.size());
  w.pad_to(h.state_offset);
  w.append(src.state.data(), src.state.size());
  w.pad_to(h.data_offset);

  SwapFigures& f = out.figures_;
  f.ram_bytes = ram_size;
  f.chunks = count;
  f.dirty_map = base_file && base->dirty_chunks;
  f.clean_verified = f.dirty_map && base->verify_clean;
  const unsigned threads = swappool::thread_count(tuning.threads);
  std::vector<Compressor> compressors(threads);
  const size_t window = 2 * threads + 2;
  std::vector<OutSlot> slots(window);
  std::vector<ChunkEntry> table(count);
  const size_t bound = ZSTD_compressBound(cs);

  // With a dirty map that is trusted (verify_clean false), clean chunks are copied without reading
  // RAM; without a map every chunk is compared, whatever verify_clean says.
  const bool verify_clean = base_file && (base->verify_clean || !base->dirty_chunks);
  // Only the chunks the guest wrote are read then: no holes worth a walk of the whole file.
  const bool reads_dirty_only = base_file && base->dirty_chunks && !verify_clean;
  const swapholes::DataFinder data_finder(reads_dirty_only ? -1 : src.holes_fd, src.ram_file_offset, ram_size);
  auto produce = [&](size_t i, unsigned worker, size_t s) {
    OutSlot& o = slots[s];
    o.reused = o.marked_dirty = o.miss = o.compressed_now = o.ram_read = false;
    o.hole_bytes = 0;
    const uint8_t* raw = src.ram.data() + i * cs;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(cs, ram_size - i * cs));
    Compressor& comp = compressors[worker];
    swapsparse::PageMap& map = comp.map;
    uint64_t checksum = 0;
    auto read_ram = [&] {
      data_finder.runs_in(i * cs / kPage, n / kPage, comp.data);
      uint64_t data_pages = 0;
      for (const swapsparse::PageRun& r : comp.data) {
        populate(raw + r.first * kPage, r.count * kPage);
        data_pages += r.count;
      }
      o.hole_bytes = n - data_pages * kPage;
      swapsparse::scan(raw, n, comp.data, map);
      checksum = ram_checksum(raw, n, map);
      o.ram_read = true;
    };
    if (base_file) {
      o.marked_dirty = base->dirty_chunks && (*base->dirty_chunks)[i];
      const ChunkEntry& e = base_file->chunks()[i];
      if (!o.marked_dirty) {
        bool same = true;
        if (verify_clean) {
          read_ram();
          same = same_shape(e.kind, map) && checksum == e.raw_checksum;
        }
        if (same && e.kind == kZero) {
          o.kind = kZero;
          o.length = 0;
          o.stored_checksum = o.raw_checksum = 0;
          o.reused = true;
          return;
        }
        if (same) {
          o.buf.resize(e.stored_length);
          try {
            base_file->read_stored(i, o.buf.data());
            o.kind = e.kind;
            o.data = o.buf.data();
            o.length = e.stored_length;
            o.stored_checksum = e.stored_checksum;
            o.raw_checksum = e.raw_checksum;
            o.reused = true;
            return;
          } catch (const SwapError& err) {
            // RAM still holds the chunk: write it anew rather than carry a damaged copy along.
            log::warn("{}; compressing chunk {} from RAM instead", err.what(), i);
          }
        } else if (base->dirty_chunks) {
          o.miss = true;
        }
      }
    }
    if (!o.ram_read) read_ram();
    if (map.nonzero == 0) {
      o.kind = kZero;
      o.length = 0;
      o.stored_checksum = o.raw_checksum = 0;
      return;
    }
    o.raw_checksum = checksum;
    o.compressed_now = true;
    if (!comp.cctx) {
      comp.cctx.reset(ZSTD_createCCtx());
      if (!comp.cctx) throw std::bad_alloc();
    }
    if (map.nonzero < map.pages) {
      store_sparse(comp, raw, o, tuning.level);
      return;
    }
    size_t c = 0;
    const bool tried = worth_compressing(comp, raw, n, tuning.level);
    if (tried) {
      o.buf.resize(bound);
      c = ZSTD_compressCCtx(comp.cctx.get(), o.buf.data(), bound, raw, n, tuning.level);
    }
    if (tried && !ZSTD_isError(c) && c <= n - n / kMinSavingDivisor) {
      o.kind = kZstd;
      o.data = o.buf.data();
      o.length = static_cast<uint32_t>(c);
      o.stored_checksum = XXH3_64bits(o.data, c);
    } else {
      o.kind = kRaw;
      o.data = raw;  // straight from guest RAM: no copy
      o.length = static_cast<uint32_t>(n);
      o.stored_checksum = o.raw_checksum;
    }
  };

  auto last_report = Clock::now();
  auto report = [&](uint64_t done) {
    if (tuning.progress) tuning.progress({"swap-out", done, ram_size, swapimpl::seconds_since(t0)});
  };
  auto consume = [&](size_t i, size_t s) {
    const OutSlot& o = slots[s];
    const uint64_t n = std::min<uint64_t>(cs, ram_size - i * cs);
    ChunkEntry& e = table[i];
    e.kind = o.kind;
    e.stored_length = o.length;
    e.offset = w.offset();
    e.stored_checksum = o.stored_checksum;
    e.raw_checksum = o.raw_checksum;
    if (o.length) w.append(o.data, o.length);
    f.bytes_scanned += n;
    f.stored_bytes += o.length;
    if (o.kind == kZero) ++f.zero_chunks;
    if (o.reused) {
      ++f.reused_chunks;
    } else if (o.kind == kZstd || o.kind == kSparseZstd) {
      ++f.compressed_chunks;
    } else if (o.kind == kRaw || o.kind == kSparseRaw) {
      ++f.raw_chunks;
    }
    if (!o.reused && is_sparse(o.kind)) ++f.sparse_chunks;
    if (o.compressed_now) f.compressed_input_bytes += n;
    if (!o.reused) ++f.rewritten_chunks;
    if (o.marked_dirty) ++f.marked_dirty_chunks;
    if (o.miss) ++f.dirty_map_misses;
    if (o.ram_read) f.ram_read_bytes += n;
    f.hole_bytes += o.hole_bytes;
    if (i == count / 2) fault_point("swap-out:mid-data");
    if (tuning.progress && Clock::now() - last_report >= tuning.progress_interval) {
      last_report = Clock::now();
      report(f.bytes_scanned);
    }
  };
  swappool::ordered_pipeline(count, threads, window, produce, consume);

  const uint64_t table_offset = w.offset();
  w.append(table.data(), table.size() * sizeof(ChunkEntry));
  Trailer t{};
  std::memcpy(t.magic, kTrailerMagic, sizeof kTrailerMagic);
  t.swap_id = swap_id;
  t.table_offset = table_offset;
  t.table_checksum = XXH3_64bits(table.data(), table.size() * sizeof(ChunkEntry));
  t.file_length = table_offset + table.size() * sizeof(ChunkEntry) + sizeof t;
  t.stored_bytes = f.stored_bytes;
  t.header_checksum = h.checksum;
  t.checksum = trailer_checksum(t);
  w.append(&t, sizeof t);
  w.finish();
  fault_point("swap-out:after-trailer");
  swapio::fsync_or_throw(out.fd_.get(), temp_name);
  fault_point("swap-out:after-fsync");

  f.file_bytes = t.file_length;
  f.written_bytes = w.bytes_written();
  f.seconds = swapimpl::seconds_since(t0);
  report(f.bytes_scanned);
  return out;
}

}  // namespace nvhv::persistence
