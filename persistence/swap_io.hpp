#pragma once
// Plain file I/O for swap files: whole reads and writes that retry short transfers, a coalescing
// sequential writer, and the durability steps of a rename-into-place (fsync file, rename, fsync
// directory).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "vmm/base/unique_fd.hpp"

namespace nvhv::persistence::swapio {

// Reads exactly n bytes at `offset`; returns false on end of file, throws SystemError otherwise.
bool pread_full(int fd, void* buf, size_t n, uint64_t offset);
void pwrite_full(int fd, const void* buf, size_t n, uint64_t offset, const std::string& what);
void fsync_or_throw(int fd, const std::string& what);
// Makes a rename or creation in `dir` durable.
void fsync_directory(const std::filesystem::path& dir);
uint64_t file_size(int fd, const std::string& what);
// An exclusive (or shared) flock without waiting; false if another process holds it.
bool try_lock(int fd, bool exclusive);
// Absolute, normalised path (symlinks of existing parents resolved): the name whose hash image
// swap records keep.
std::string absolute_path(const std::filesystem::path& p);
uint64_t path_hash(const std::string& absolute);
uint64_t random_id();  // never 0
uint64_t realtime_ns();

// Sequential writer of a new file from offset 0. Everything goes through an aligned 8 MiB
// buffer written with O_DIRECT when the file system allows it: on the disks measured
// (tests/bench/swap_bench) page-cache writes of a large file cost more CPU than compressing it,
// and their write-back was several times slower. The last partial block is padded for O_DIRECT and
// the file then cut to its exact length. Without O_DIRECT it writes through the page cache.
class SequentialWriter {
 public:
  SequentialWriter(int fd, const std::string& path, std::string what);
  ~SequentialWriter();
  SequentialWriter(const SequentialWriter&) = delete;
  SequentialWriter& operator=(const SequentialWriter&) = delete;

  void append(const void* p, size_t n);
  void pad_to(uint64_t offset);
  // Writes what is buffered and sets the file's length; call once, at the end.
  void finish();
  uint64_t offset() const { return offset_ + used_; }
  uint64_t bytes_written() const { return written_; }
  bool direct() const { return direct_fd_ >= 0; }

 private:
  void write_block(size_t n);

  int fd_;
  int direct_fd_ = -1;
  std::string what_;
  uint64_t offset_ = 0;
  uint64_t written_ = 0;
  uint8_t* buffer_ = nullptr;
  size_t used_ = 0;
};

}  // namespace nvhv::persistence::swapio
