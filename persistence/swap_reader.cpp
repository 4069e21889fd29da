// Reading a swap file: every structural check happens in open(), before any chunk is read, so a
// truncated or damaged file is refused early with the reason; chunk data is checked by verify()
// and restore() (swap_chunks.cpp), in parallel.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/core.h>

#include "persistence/identity.hpp"
#include "persistence/swap.hpp"
#include "persistence/swap_hash.hpp"
#include "persistence/swap_internal.hpp"
#include "persistence/swap_io.hpp"
#include "persistence/swap_sparse.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/fault_injection.hpp"
#include "vmm/base/wall_clock.hpp"

namespace nvhv::persistence {
namespace {

using namespace swapfmt;

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
  if (h.format_version < kOldestReadableVersion || h.format_version > kFormatVersion)
    fail(fmt::format("swap format version {} is not supported (this nvhv reads versions {} to {})", h.format_version,
                     kOldestReadableVersion, kFormatVersion));
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
  const bool sparse = h.format_version >= 2;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    const ChunkEntry& e = chunks_[i];
    const uint64_t raw = chunk_raw_size(i);
    const uint64_t bitmap = swapsparse::bitmap_bytes(raw / kPage);
    bool ok = e.offset == expected;
    switch (e.kind) {
      case kZero: ok = ok && e.stored_length == 0; break;
      case kRaw: ok = ok && e.stored_length == raw && e.stored_checksum == e.raw_checksum; break;
      case kZstd: ok = ok && e.stored_length > 0 && e.stored_length < raw; break;
      // The bitmap itself is checked when the stored bytes are read (swap_chunks.cpp).
      case kSparseRaw:
        ok = ok && sparse && e.stored_length > bitmap && e.stored_length <= bitmap + raw &&
             e.stored_checksum == e.raw_checksum;
        break;
      case kSparseZstd: ok = ok && sparse && e.stored_length > bitmap && e.stored_length < raw; break;
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
  check_stored(i, out);
}

void SwapFile::check_stored(size_t i, const uint8_t* stored) const {
  const ChunkEntry& e = chunks_.at(i);
  if (XXH3_64bits(stored, e.stored_length) != e.stored_checksum)
    fail(fmt::format("chunk {} (guest RAM at {:#x}) is corrupt: stored checksum mismatch", i, i * uint64_t{header_.chunk_size}));
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
  c.consumed_at_ns = std::max<uint64_t>(realtime_ns(), 1);
  swapio::pwrite_full(fd_.get(), &c.consumed_at_ns, sizeof c.consumed_at_ns, kConsumedOffset, path_);
  swapio::fsync_or_throw(fd_.get(), path_);
  consumed_ = {c.consumed_at_ns, shown, c.target_path_hash};
}

}  // namespace nvhv::persistence
