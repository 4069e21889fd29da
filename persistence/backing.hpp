#pragma once
// The persistent memory a VM image lives in: a regular file, a file on a DAX filesystem or a
// device-DAX node, mapped shared so guest stores reach the medium and KVM can map the same pages
// into the guest. DAX backings are mapped through libpmem2, which knows the platform's
// persistence domain; a file behind the page cache needs only mmap and msync.
#include <cstddef>
#include <cstdint>
#include <string>

#include "vmm/base/mapping.hpp"
#include "vmm/base/unique_fd.hpp"

struct pmem2_map;

namespace nvhv::persistence {

enum class BackingKind {
  file,        // page cache in front of a block device (or tmpfs): durable only after msync
  fsdax_file,  // file on a DAX filesystem mapped with MAP_SYNC: stores go straight to pmem
  devdax,      // /dev/daxX.Y: the whole namespace, no filesystem
  memory,      // anonymous memory for tests and fuzzing: never durable
};

// What must happen to a store before it survives power loss (libpmem2's store granularity).
enum class Granularity {
  byte,        // CPU caches are inside the persistence domain (eADR): a fence is enough
  cache_line,  // the memory controller is (ADR): cache lines must be flushed
  page,        // nothing is: dirty pages must be written back with msync
};

const char* to_string(BackingKind kind);
const char* to_string(Granularity g);
// One operator-facing sentence on what the granularity costs.
const char* explain(Granularity g);

class Backing {
 public:
  struct Options {
    bool create_if_missing = false;
    // An existing regular file smaller than required_size is extended instead of refused.
    bool grow = false;
  };

  // Opens and maps `path` read-write and takes an exclusive flock on it, so two VMMs can never
  // run the same image. required_size == 0 accepts any existing size. The whole backing is
  // mapped (its size rounded down to the mapping alignment).
  static Backing open(const std::string& path, uint64_t required_size, Options options);
  static Backing open(const std::string& path, uint64_t required_size, bool create_if_missing) {
    return open(path, required_size, Options{create_if_missing, false});
  }
  // Zero-filled anonymous memory (BackingKind::memory) with the same interface.
  static Backing anonymous(size_t size);

  Backing(Backing&& other) noexcept;
  Backing& operator=(Backing&& other) noexcept;
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;
  ~Backing();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  BackingKind kind() const { return kind_; }
  Granularity granularity() const { return granularity_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

  // Makes [p, p+n) durable: flush + drain, or msync for page granularity.
  void persist(const void* p, size_t n) const { persist_fn_(p, n); }
  // flush() many ranges, then drain() once: cheaper than one persist per range. For a file
  // behind the page cache, flush() only starts the write-back of the range and drain() waits for
  // all of it with one fdatasync: an msync per range is a synchronous round trip (and on ext4
  // a journal commit) each, where the block layer could merge and overlap the writes.
  void flush(const void* p, size_t n) const {
    if (page_cache_file()) start_writeback(p, n);
    else flush_fn_(p, n);
  }
  void drain() const {
    if (page_cache_file()) wait_for_writeback();
    else drain_fn_();
  }

 private:
  using RangeFn = void (*)(const void*, size_t);
  using DrainFn = void (*)();

  Backing() = default;
  bool page_cache_file() const { return granularity_ == Granularity::page && kind_ == BackingKind::file; }
  void start_writeback(const void* p, size_t n) const;
  void wait_for_writeback() const;
  void map_page_cache(int fd, size_t length);
  void map_dax(int fd, uint64_t required_size);
  void reset();

  UniqueFd fd_;
  std::string path_;
  pmem2_map* map_ = nullptr;  // DAX backings
  Mapping mapping_;           // the others
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  BackingKind kind_ = BackingKind::memory;
  Granularity granularity_ = Granularity::page;
  RangeFn persist_fn_ = nullptr;
  RangeFn flush_fn_ = nullptr;
  DrainFn drain_fn_ = nullptr;
};

}  // namespace nvhv::persistence
