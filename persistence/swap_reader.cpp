// Reading a swap file: every structural check happens in open(), before any chunk is read, so a
// truncated or damaged file is refused early with the reason; chunk data is checked by verify()
// and restore(), in parallel.
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include <fmt/core.h>

#include "persistence/identity.hpp"
#include "persistence/swap.hpp"
#include "persistence/swap_internal.hpp"
#include "persistence/swap_io.hpp"
#include "persistence/swap_pool.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/fault_injection.hpp"

namespace nvhv::persistence {
namespace {

using namespace swapfmt;
using swapimpl::Clock;

std::string hex(const char* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", static_cast<uint8_t>(p[i]));
  return s;
}

}  // namespace

SwapFile::SwapFile(SwapFile&&) noexcept = default;
SwapFile& SwapFile::operator=(SwapFile&&) noexcept = default;
SwapFile::~SwapFile() = default;

void SwapFile::fail(const std::string& problem) const { throw SwapError(fmt::format("swap file {}: {}", path_, problem)); }

SwapFile SwapFile::open(const std::filesystem::path& path, Mode mode) {
  SwapFile f;
  f.path_ = path.string();
  f.writable_ = mode == Mode::update;
  f.fd_.reset(::open(f.path_.c_str(), (f.writable_ ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!f.fd_) {
    if (errno == ENOENT) f.fail("does not exist");
    throw SystemError(errno, fmt::format("open swap file {}", f.path_));
  }
  if (!swapio::try_lock(f.fd_.get(), f.writable_))
    throw SwapBusyError(fmt::format("swap file {}: is in use by another nvhv process (swap-in or swap-out under way)", f.path_));
  f.load();
  return f;
}

SwapFile SwapFile::from_fd(UniqueFd fd, std::string name) {
  SwapFile f;
  f.path_ = std::move(name);
  f.fd_ = std::move(fd);
  f.load();
  return f;
}

void SwapFile::load() {
  file_size_ = swapio::file_size(fd_.get(), path_);
  if (file_size_ == 0) fail("is empty");
  if (file_size_ < sizeof(Header)) fail(fmt::format("is truncated: {} bytes, not even a header", file_size_));
  if (!swapio::pread_full(fd_.get(), &header_, sizeof header_, 0)) fail("is truncated inside its header");
  const Header& h = header_;
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    fail(fmt::format("is not an nvhv swap file (magic bytes {}, expected {})", hex(h.magic, 8), hex(kMagic, 8)));
  if (h.format_version != kFormatVersion)
    fail(fmt::format("swap format version {} is not supported (this nvhv reads version {})", h.format_version,
                     kFormatVersion));
  if (h.header_size != sizeof h || header_checksum(h) != h.checksum) fail("the header is corrupt (checksum mismatch)");

  const uint64_t cs = h.chunk_size;
  const bool geometry_ok =
      cs >= kMinChunk && cs <= kMaxChunk && std::has_single_bit(cs) && h.ram_size > 0 && h.ram_size % kPage == 0 &&
      h.ram_size <= kMaxRam && h.chunk_count == (h.ram_size + cs - 1) / cs && h.identity_length <= kMaxIdentity &&
      h.identity_offset == kIdentityOffset && h.state_offset == round_up(kIdentityOffset + h.identity_length, kPage) &&
      h.state_length <= kMaxState && h.data_offset == round_up(h.state_offset + h.state_length, kPage) && h.swap_id != 0;
  if (!geometry_ok)
    fail(fmt::format("the header is corrupt (inconsistent layout: RAM {} bytes in {} chunks of {}, identity {} bytes, "
                     "state {} bytes at {}, data at {})",
                     h.ram_size, h.chunk_count, cs, h.identity_length, h.state_length, h.state_offset, h.data_offset));

  // The trailer is written last: without it the swap-out never finished, or the file was cut.
  const uint64_t table_length = h.chunk_count * sizeof(ChunkEntry);
  const uint64_t minimum = h.data_offset + table_length + sizeof(Trailer);
  if (file_size_ < minimum)
    fail(fmt::format("is truncated: {} bytes, but its header needs at least {} (was the swap-out interrupted, or the "
                     "file cut short?)",
                     file_size_, minimum));
  if (!swapio::pread_full(fd_.get(), &trailer_, sizeof trailer_, file_size_ - sizeof trailer_))
    fail("is truncated at its trailer");
  const Trailer& t = trailer_;
  if (std::memcmp(t.magic, kTrailerMagic, sizeof kTrailerMagic) != 0)
    fail(fmt::format("is incomplete or truncated: no commit trailer in its last {} bytes ({} bytes in all; was the "
                     "swap-out interrupted, or the file cut short?)",
                     sizeof t, file_size_));
  if (trailer_checksum(t) != t.checksum) fail("the trailer is corrupt (checksum mismatch)");
  if (t.swap_id != h.swap_id || t.header_checksum != h.checksum)
    fail("the trailer belongs to another swap file (swap id or header checksum differ)");
  if (t.file_length != file_size_)
    fail(fmt::format("its trailer says {} bytes but the file has {}", t.file_length, file_size_));
  if (t.table_offset != file_size_ - sizeof t - table_length || t.table_offset < h.data_offset)
    fail(fmt::format("the trailer is corrupt (chunk table at {} does not fit the file)", t.table_offset));

  chunks_.resize(h.chunk_count);
  if (!swapio::pread_full(fd_.get(), chunks_.data(), table_length, t.table_offset)) fail("is truncated in its chunk table");
  if (XXH3_64bits(chunks_.data(), table_length) != t.table_checksum) fail("the chunk table is corrupt (checksum mismatch)");
  uint64_t expected = h.data_offset;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    const ChunkEntry& e = chunks_[i];
    const uint64_t raw = chunk_raw_size(i);
    bool ok = e.offset == expected;
    switch (e.kind) {
      case kZero: ok = ok && e.stored_length == 0; break;
      case kRaw: ok = ok && e.stored_length == raw && e.stored_checksum == e.raw_checksum; break;
      case kZstd: ok = ok && e.stored_length > 0 && e.stored_length < raw; break;
      default: ok = false;
    }
    if (!ok)
      fail(fmt::format("the chunk table is corrupt: chunk {} (kind {}, {} bytes at offset {}) is inconsistent", i,
                       e.kind, e.stored_length, e.offset));
    expected += e.stored_length;
  }
  if (expected != t.table_offset || expected - h.data_offset != t.stored_bytes)
    fail(fmt::format("the chunk table is corrupt: chunks end at {}, the table starts at {}", expected, t.table_offset));

  identity_.resize(h.identity_length);
  if (!swapio::pread_full(fd_.get(), identity_.data(), identity_.size(), h.identity_offset))
    fail("is truncated in its identity");
  if (identity_hash(identity_) != h.identity_hash) fail("the VM identity text is corrupt (hash mismatch)");
  state_.resize(h.state_length);
  if (!swapio::pread_full(fd_.get(), state_.data(), state_.size(), h.state_offset)) fail("is truncated in its state");
  if (XXH3_64bits(state_.data(), state_.size()) != h.state_checksum)
    fail("the machine state is corrupt (checksum mismatch)");

  Consumed c{};
  if (!swapio::pread_full(fd_.get(), &c, sizeof c, kConsumedOffset)) fail("is truncated in its consumed record");
  consumed_.at_ns = c.consumed_at_ns;
  consumed_.target_path_hash = c.target_path_hash;
  if (c.consumed_at_ns && c.target_length <= kMaxTargetPath) {
    std::string target(c.target_length, '\0');
    if (swapio::pread_full(fd_.get(), target.data(), target.size(), kConsumedTargetOffset) &&
        swapio::path_hash(target) == c.target_path_hash)
      consumed_.target = std::move(target);
  }
}

uint64_t SwapFile::chunk_raw_size(size_t i) const {
  const uint64_t cs = header_.chunk_size;
  return std::min<uint64_t>(cs, header_.ram_size - i * cs);
}

void SwapFile::check_matches(const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus) const {
  const std::string canonical = canonical_identity(identity);
  if (canonical != identity_) {
    std::string what;
    try {
      for (const auto& line : identity_differences(nlohmann::json::parse(identity_), identity))
        what += (what.empty() ? "" : "; ") + line;
    } catch (const nlohmann::json::exception&) {
      what = "its identity is not valid JSON";
    }
    if (what.empty()) what = "the identity text differs";
    fail(fmt::format("holds a VM of a different configuration: {}", what));
  }
  if (header_.ram_size != ram_size || header_.vcpus != vcpus)
    fail(fmt::format("holds {} bytes of RAM and {} vCPUs, the config asks for {} bytes and {}", header_.ram_size,
                     header_.vcpus, ram_size, vcpus));
}

void SwapFile::read_stored(size_t i, uint8_t* out) const {
  const ChunkEntry& e = chunks_.at(i);
  if (!swapio::pread_full(fd_.get(), out, e.stored_length, e.offset))
    fail(fmt::format("is truncated in chunk {} (offset {})", i, e.offset));
  if (XXH3_64bits(out, e.stored_length) != e.stored_checksum)
    fail(fmt::format("chunk {} (guest RAM at {:#x}) is corrupt: stored checksum mismatch", i, i * uint64_t{header_.chunk_size}));
}

namespace {

// Per-thread buffers and decompression context of verify() and restore().
struct ReadWorker {
  std::vector<uint8_t> stored;
  std::vector<uint8_t> raw;
  swapimpl::DCtxPtr dctx;
};

// Writes the pages of out[0, n) that are not all zero to `target` at `offset`, in runs; the
// target reads as zero already, so a mostly-zero chunk costs a fraction of its size in I/O.
uint64_t write_nonzero_pages(const Backing& target, const uint8_t* out, uint64_t n, uint64_t offset) {
  uint64_t written = 0, run = 0, run_start = 0;
  auto flush_run = [&] {
    if (run) swapio::pwrite_full(target.fd(), out + run_start, run, offset + run_start, target.path());
    written += run;
    run = 0;
  };
  for (uint64_t p = 0; p < n; p += kPage) {
    const uint64_t len = std::min<uint64_t>(kPage, n - p);
    if (swapimpl::is_zero(out + p, len)) {
      flush_run();
    } else {
      if (!run) run_start = p;
      run += len;
    }
  }
  flush_run();
  return written;
}

}  // namespace

SwapFigures SwapFile::file_figures(uint64_t bytes_scanned) const {
  SwapFigures f;
  f.ram_bytes = header_.ram_size;
  f.bytes_scanned = bytes_scanned;
  f.chunks = chunks_.size();
  for (const auto& e : chunks_) {
    f.zero_chunks += e.kind == kZero;
    f.compressed_chunks += e.kind == kZstd;
    f.raw_chunks += e.kind == kRaw;
  }
  f.stored_bytes = trailer_.stored_bytes;
  f.file_bytes = file_size_;
  return f;
}

SwapFigures SwapFile::verify(bool decompress, const SwapTuning& tuning) const {
  const auto t0 = Clock::now();
  const unsigned threads = swappool::thread_count(tuning.threads);
  std::vector<ReadWorker> workers(threads);
  std::atomic<uint64_t> done{0};
  auto work = [&](size_t i, unsigned w) {
    const ChunkEntry& e = chunks_[i];
    const uint64_t n = chunk_raw_size(i);
    if (e.kind != kZero) {
      ReadWorker& rw = workers[w];
      rw.stored.resize(e.stored_length);
      read_stored(i, rw.stored.data());
      if (decompress && e.kind == kZstd) {
        if (!rw.dctx) rw.dctx.reset(ZSTD_createDCtx());
        rw.raw.resize(n);
        const size_t r = ZSTD_decompressDCtx(rw.dctx.get(), rw.raw.data(), n, rw.stored.data(), e.stored_length);
        if (ZSTD_isError(r) || r != n)
          fail(fmt::format("chunk {} is corrupt: {}", i,
                           ZSTD_isError(r) ? std::string(ZSTD_getErrorName(r)) : fmt::format("{} bytes, expected {}", r, n)));
        if (XXH3_64bits(rw.raw.data(), n) != e.raw_checksum)
          fail(fmt::format("chunk {} is corrupt: RAM checksum mismatch after decompression", i));
      }
    }
    done += n;
  };
  auto tick = [&] {
    if (tuning.progress) tuning.progress({"verify", done.load(), header_.ram_size, swapimpl::seconds_since(t0)});
  };
  swappool::parallel_for(chunks_.size(), threads, work, tick, tuning.progress_interval);
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
  // Page-cache files take large pwrites (cheaper than faulting in every page of the mapping);
  // DAX and memory are written through the mapping and flushed per chunk.
  const bool by_write = target.kind() == BackingKind::file && target.fd() >= 0;
  uint8_t* ram = target.data() + ram_offset;
  const unsigned threads = swappool::thread_count(tuning.threads);
  std::vector<ReadWorker> workers(threads);
  std::atomic<uint64_t> done{0}, written{0};
  std::atomic<size_t> finished{0};
  const size_t half = chunks_.size() / 2;
  auto work = [&](size_t i, unsigned w) {
    const ChunkEntry& e = chunks_[i];
    const uint64_t n = chunk_raw_size(i);
    uint8_t* dest = ram + i * uint64_t{header_.chunk_size};
    ReadWorker& rw = workers[w];
    if (e.kind == kZero) {
      if (!known_zero && !swapimpl::is_zero(dest, n)) {
        std::memset(dest, 0, n);
        if (!by_write) target.flush(dest, n);
        written += n;
      }
    } else {
      rw.stored.resize(e.stored_length);
      read_stored(i, rw.stored.data());
      const uint8_t* out = rw.stored.data();
      if (e.kind == kZstd) {
        if (!rw.dctx) rw.dctx.reset(ZSTD_createDCtx());
        rw.raw.resize(n);
        uint8_t* into = by_write ? rw.raw.data() : dest;
        const size_t r = ZSTD_decompressDCtx(rw.dctx.get(), into, n, rw.stored.data(), e.stored_length);
        if (ZSTD_isError(r) || r != n)
          fail(fmt::format("chunk {} is corrupt: {}", i,
                           ZSTD_isError(r) ? std::string(ZSTD_getErrorName(r)) : fmt::format("{} bytes, expected {}", r, n)));
        if (XXH3_64bits(into, n) != e.raw_checksum)
          fail(fmt::format("chunk {} is corrupt: RAM checksum mismatch after decompression", i));
        out = into;
      }
      if (by_write) {
        const uint64_t off = ram_offset + i * uint64_t{header_.chunk_size};
        if (known_zero) {
          written += write_nonzero_pages(target, out, n, off);
        } else {
          swapio::pwrite_full(target.fd(), out, n, off, target.path());
          written += n;
        }
      } else {
        if (out != dest) std::memcpy(dest, out, n);
        target.flush(dest, n);
        written += n;
      }
    }
    done += n;
    if (finished.fetch_add(1) + 1 == half) fault_point("swap-in:mid-ram");
  };
  auto tick = [&] {
    if (tuning.progress) tuning.progress({"swap-in", done.load(), header_.ram_size, swapimpl::seconds_since(t0)});
  };
  swappool::parallel_for(chunks_.size(), threads, work, tick, tuning.progress_interval);
  if (by_write)
    target.persist(ram, header_.ram_size);  // msync: writes back the range, however it was dirtied
  else
    target.drain();
  SwapFigures f = file_figures(done);
  f.written_bytes = written;
  f.seconds = swapimpl::seconds_since(t0);
  tick();
  return f;
}

void SwapFile::mark_consumed(const std::string& target) {
  if (!writable_) throw std::logic_error("SwapFile::mark_consumed() on a swap file opened read-only");
  const std::string shown = target.substr(0, kMaxTargetPath);
  Consumed c{};
  c.target_path_hash = swapio::path_hash(shown);
  c.target_length = static_cast<uint32_t>(shown.size());
  swapio::pwrite_full(fd_.get(), shown.data(), shown.size(), kConsumedTargetOffset, path_);
  swapio::pwrite_full(fd_.get(), &c, sizeof c, kConsumedOffset, path_);
  swapio::fsync_or_throw(fd_.get(), path_);
  fault_point("swap-in:after-consume-record");
  // The one store that decides: a single aligned 8-byte write, within one sector.
  c.consumed_at_ns = std::max<uint64_t>(swapio::realtime_ns(), 1);
  swapio::pwrite_full(fd_.get(), &c.consumed_at_ns, sizeof c.consumed_at_ns, kConsumedOffset, path_);
  swapio::fsync_or_throw(fd_.get(), path_);
  consumed_ = {c.consumed_at_ns, shown, c.target_path_hash};
}

}  // namespace nvhv::persistence
