#include "persistence/backing.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include <fmt/core.h>

#include "persistence/pmem2_library.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::persistence {
namespace {

std::string human(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{} bytes", bytes);
}

constexpr size_t kMappingAlignment = size_t{2} << 20;  // lets KVM map guest RAM with huge pages

[[noreturn]] void throw_pmem2(int rc, const std::string& what) {
  // pmem2 returns either -errno or its own codes; pmem2_errormsg() carries the detail either way.
  // (pmem2_err_to_errno is declared by Debian's header but missing from its libpmem2.so.1.)
  int err = (rc < 0 && rc > -4096) ? -rc : EIO;
  throw SystemError(err, fmt::format("{} ({})", what, Pmem2::get().errormsg()));
}

struct ConfigDeleter {
  void operator()(pmem2_config* c) const { Pmem2::get().config_delete(&c); }
};
struct SourceDeleter {
  void operator()(pmem2_source* s) const { Pmem2::get().source_delete(&s); }
};
using ConfigPtr = std::unique_ptr<pmem2_config, ConfigDeleter>;
using SourcePtr = std::unique_ptr<pmem2_source, SourceDeleter>;

SourcePtr pmem2_source_of(int fd, const std::string& path) {
  pmem2_source* raw = nullptr;
  if (int rc = Pmem2::get().source_from_fd(&raw, fd); rc != 0) {
    if (rc == PMEM2_E_INVALID_FILE_TYPE)
      throw ConfigError(fmt::format("backing {} is a character device but not device-DAX", path));
    throw_pmem2(rc, fmt::format("pmem2_source_from_fd {}", path));
  }
  return SourcePtr(raw);
}

// fd < 0 maps anonymous shared memory. The start is aligned to kMappingAlignment.
Mapping map_shared_aligned(int fd, size_t length, const std::string& what) {
  void* area = ::mmap(nullptr, length + kMappingAlignment, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) throw SystemError(errno, fmt::format("reserve {} bytes of address space for {}", length, what));
  const auto base = reinterpret_cast<uintptr_t>(area);
  const uintptr_t start = (base + kMappingAlignment - 1) & ~uintptr_t{kMappingAlignment - 1};
  const int flags = MAP_SHARED | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0);
  void* p = ::mmap(reinterpret_cast<void*>(start), length, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::munmap(area, length + kMappingAlignment);
    throw SystemError(err, fmt::format("mmap {} ({} bytes)", what, length));
  }
  if (start > base) ::munmap(area, start - base);
  const uintptr_t end = start + length, area_end = base + length + kMappingAlignment;
  if (area_end > end) ::munmap(reinterpret_cast<void*>(end), area_end - end);
  return Mapping(p, length);
}

// The whole backing is mapped, rounded down to its mapping alignment.
size_t usable_length(const std::string& path, uint64_t size, uint64_t align, uint64_t required_size) {
  const uint64_t length = size / align * align;
  if (length == 0 || length < required_size)
    throw ConfigError(fmt::format("backing {} has {} usable bytes (size {}, alignment {}) but this VM needs {} ({})",
                                  path, length, size, align, required_size, human(required_size)));
  return static_cast<size_t>(length);
}

// Page granularity without libpmem2: the same msync, but a failure is reported to the caller
// where libpmem2 would abort the process.
void msync_range(const void* p, size_t n) {
  const auto first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095};
  const auto end = reinterpret_cast<uintptr_t>(p) + n;
  if (::msync(reinterpret_cast<void*>(first), end - first, MS_SYNC) != 0)
    throw SystemError(errno, fmt::format("msync {} bytes at {}", n, p));
}
// Anonymous memory is never durable; a fence keeps the ordering callers rely on.
void fence_only(const void*, size_t) { std::atomic_thread_fence(std::memory_order_seq_cst); }
void fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

const char* fs_name(int64_t type) {
  switch (type) {
    case TMPFS_MAGIC: return "tmpfs";
    case EXT4_SUPER_MAGIC: return "ext4";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    case NFS_SUPER_MAGIC: return "nfs";
    default: return "an unrecognised filesystem";
  }
}

// Why a regular file cannot be mapped MAP_SYNC, or nothing when it can (a file on a DAX mount).
std::optional<std::string> map_sync_refusal(int fd) {
  struct statfs fs{};
  const char* fs_type = ::fstatfs(fd, &fs) == 0 ? fs_name(fs.f_type) : "an unknown filesystem";
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
  if (p != MAP_FAILED) {
    ::munmap(p, page);
    return std::nullopt;
  }
  if (errno == EOPNOTSUPP)
    return fmt::format("the file is on {}, which does not support MAP_SYNC (not a DAX mount)", fs_type);
  return fmt::format("the file is on {}; MAP_SYNC mmap failed: {}", fs_type, std::strerror(errno));
}

// Reserves the blocks now: on a DAX filesystem a first-touch fault on a hole would allocate
// blocks and journal metadata, and on tmpfs running out of space later would be a SIGBUS.
void set_file_size(int fd, const std::string& path, uint64_t size) {
  if (::fallocate(fd, 0, 0, static_cast<off_t>(size)) == 0) return;
  if (errno != EOPNOTSUPP) throw SystemError(errno, fmt::format("fallocate {} to {} bytes", path, size));
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    throw SystemError(errno, fmt::format("ftruncate {} to {} bytes", path, size));
}

}  // namespace

const char* to_string(BackingKind kind) {
  switch (kind) {
    case BackingKind::file: return "regular file";
    case BackingKind::fsdax_file: return "file on a DAX filesystem";
    case BackingKind::devdax: return "device-DAX";
    case BackingKind::memory: return "anonymous memory";
  }
  return "?";
}

const char* to_string(Granularity g) {
  switch (g) {
    case Granularity::byte: return "BYTE";
    case Granularity::cache_line: return "CACHE_LINE";
    case Granularity::page: return "PAGE";
  }
  return "?";
}

const char* explain(Granularity g) {
  switch (g) {
    case Granularity::byte: return "CPU caches are inside the persistence domain (eADR); stores need only a fence";
    case Granularity::cache_line: return "CPU caches must be flushed to reach the persistence domain (ADR)";
    case Granularity::page: return "dirty pages must be written back with msync to be durable";
  }
  return "?";
}

Backing Backing::open(const std::string& path, uint64_t required_size, Options options) {
  Backing b;
  b.path_ = path;
  bool created = false;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && options.create_if_missing) {
    if (required_size == 0) throw ConfigError(fmt::format("cannot create backing {} without a size", path));
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw SystemError(errno, fmt::format("create backing {}", path));
    created = true;
  } else if (fd < 0) {
    throw SystemError(errno, fmt::format("open backing {}", path));
  }
  b.fd_.reset(fd);

  // A half-made file must not be mistaken for an image on the next start.
  struct RemoveOnFailure {
    const std::string& path;
    bool armed;
    ~RemoveOnFailure() {
      if (armed) ::unlink(path.c_str());
    }
  } remove_on_failure{path, created};

  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw ConfigError(fmt::format("backing {} is in use by another process (it holds the lock)", path));
    throw SystemError(errno, fmt::format("flock {}", path));
  }

  struct stat st{};
  if (::fstat(fd, &st) != 0) throw SystemError(errno, fmt::format("fstat {}", path));
  const bool is_char = S_ISCHR(st.st_mode);
  if (!S_ISREG(st.st_mode) && !is_char)
    throw ConfigError(fmt::format("backing {} is neither a regular file nor a device-DAX node", path));
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < required_size) {
    if (!created && !options.grow)
      throw ConfigError(fmt::format("backing file {} is {} ({} bytes) but this VM needs {} ({} bytes); "
                                    "refusing to resize an existing file unless asked to grow it",
                                    path, human(static_cast<uint64_t>(st.st_size)), st.st_size,
                                    human(required_size), required_size));
    set_file_size(fd, path, required_size);
  }

  std::optional<std::string> no_map_sync;
  if (is_char) {
    b.map_dax(fd, required_size);
    b.kind_ = BackingKind::devdax;
  } else if ((no_map_sync = map_sync_refusal(fd))) {
    // Behind the page cache libpmem2 adds nothing but an msync, and loading it costs every start.
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t size = std::max<uint64_t>(static_cast<uint64_t>(st.st_size), required_size);
    b.map_page_cache(fd, usable_length(path, size, page, required_size));
  } else {
    b.map_dax(fd, required_size);
    b.kind_ = b.granularity_ == Granularity::page ? BackingKind::file : BackingKind::fsdax_file;
    if (b.kind_ == BackingKind::file)
      no_map_sync = "MAP_SYNC works, but libpmem2 chose page granularity (PMEM2_FORCE_GRANULARITY set?)";
  }

  log::info("mapped {} ({}, {}) with store granularity {}: {}", path, to_string(b.kind_), human(b.size_),
            to_string(b.granularity_), explain(b.granularity_));
  if (no_map_sync) log::info("MAP_SYNC not used for {}: {}", path, *no_map_sync);
  remove_on_failure.armed = false;
  return b;
}

Backing Backing::anonymous(size_t size) {
  Backing b;
  b.path_ = "<memory>";
  b.mapping_ = map_shared_aligned(-1, size, "anonymous memory");
  b.data_ = b.mapping_.bytes();
  b.size_ = size;
  b.kind_ = BackingKind::memory;
  b.granularity_ = Granularity::byte;
  b.persist_fn_ = fence_only;
  b.flush_fn_ = fence_only;
  b.drain_fn_ = fence;
  return b;
}

void Backing::map_page_cache(int fd, size_t length) {
  mapping_ = map_shared_aligned(fd, length, path_);
  data_ = mapping_.bytes();
  size_ = length;
  kind_ = BackingKind::file;
  granularity_ = Granularity::page;
  persist_fn_ = msync_range;
  // flush() and drain() of a page-cache file use write-back and fdatasync instead.
  flush_fn_ = fence_only;
  drain_fn_ = fence;
}

void Backing::map_dax(int fd, uint64_t required_size) {
  const Pmem2& pmem2 = Pmem2::get();
  SourcePtr src = pmem2_source_of(fd, path_);
  // For device-DAX this reads /sys/dev/char/<maj>:<min>/size and .../device/align (2 MiB typically).
  size_t size = 0, align = 0;
  if (int rc = pmem2.source_size(src.get(), &size); rc != 0) throw_pmem2(rc, fmt::format("size of {}", path_));
  if (int rc = pmem2.source_alignment(src.get(), &align); rc != 0)
    throw_pmem2(rc, fmt::format("mapping alignment of {}", path_));
  const size_t length = usable_length(path_, size, align, required_size);

  pmem2_config* raw_cfg = nullptr;
  if (int rc = pmem2.config_new(&raw_cfg); rc != 0) throw_pmem2(rc, "pmem2_config_new");
  ConfigPtr cfg(raw_cfg);
  // PAGE is the weakest guarantee we accept, so every kind maps; libpmem2 upgrades to
  // MAP_SYNC (CACHE_LINE or BYTE) where the filesystem and platform allow it.
  if (int rc = pmem2.config_set_required_store_granularity(cfg.get(), PMEM2_GRANULARITY_PAGE); rc != 0)
    throw_pmem2(rc, "pmem2_config_set_required_store_granularity");
  if (int rc = pmem2.config_set_length(cfg.get(), length); rc != 0) throw_pmem2(rc, "pmem2_config_set_length");
  // Shared is the default and what KVM needs: guest stores must land in the file, not a COW copy.
  if (int rc = pmem2.config_set_sharing(cfg.get(), PMEM2_SHARED); rc != 0) throw_pmem2(rc, "pmem2_config_set_sharing");
  if (int rc = pmem2.map_new(&map_, cfg.get(), src.get()); rc != 0) throw_pmem2(rc, fmt::format("pmem2_map_new {}", path_));
  data_ = static_cast<uint8_t*>(pmem2.map_get_address(map_));
  size_ = pmem2.map_get_size(map_);
  switch (pmem2.map_get_store_granularity(map_)) {
    case PMEM2_GRANULARITY_BYTE: granularity_ = Granularity::byte; break;
    case PMEM2_GRANULARITY_CACHE_LINE: granularity_ = Granularity::cache_line; break;
    case PMEM2_GRANULARITY_PAGE: granularity_ = Granularity::page; break;
  }
  // Note: for PAGE, libpmem2 aborts the process if msync fails, rather than report data loss.
  persist_fn_ = pmem2.get_persist_fn(map_);
  flush_fn_ = pmem2.get_flush_fn(map_);
  drain_fn_ = pmem2.get_drain_fn(map_);
}

void Backing::start_writeback(const void* p, size_t n) const {
  // The mapping starts at file offset 0 (map_source), so an address gives its file offset.
  const uint64_t offset = static_cast<uint64_t>(static_cast<const uint8_t*>(p) - data_);
  const uint64_t first = offset & ~uint64_t{4095};
  if (::sync_file_range(fd_.get(), static_cast<off_t>(first), static_cast<off_t>(offset + n - first),
                        SYNC_FILE_RANGE_WRITE) != 0)
    throw SystemError(errno, fmt::format("write back {} bytes of {} at offset {}", n, path_, offset));
}

void Backing::wait_for_writeback() const {
  // Also waits for pages already under write-back and flushes the device's volatile cache.
  if (::fdatasync(fd_.get()) != 0) throw SystemError(errno, fmt::format("fdatasync {}", path_));
}

Backing::Backing(Backing&& o) noexcept { *this = std::move(o); }

Backing& Backing::operator=(Backing&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::move(o.fd_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    mapping_ = std::move(o.mapping_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    kind_ = o.kind_;
    granularity_ = o.granularity_;
    persist_fn_ = o.persist_fn_;
    flush_fn_ = o.flush_fn_;
    drain_fn_ = o.drain_fn_;
  }
  return *this;
}

Backing::~Backing() { reset(); }

void Backing::reset() {
  if (map_) Pmem2::get().map_delete(&map_);
  map_ = nullptr;
  mapping_.reset();
  data_ = nullptr;
  size_ = 0;
  fd_.reset();
}

}  // namespace nvhv::persistence
