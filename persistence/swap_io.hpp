#pragma once
// Plain file I/O for swap files: whole reads and writes that retry short transfers, a coalescing
// sequential writer, and the durability steps of a rename-into-place (fsync file, rename, fsync
// directory).
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
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

// Sequential writer of a new file from offset 0. Everything goes through an aligned 8 MiB
// buffer written with O_DIRECT when the file system allows it: on the disks measured
// (tests/bench/swap_bench) page-cache writes of a large file cost more CPU than compressing it,
// and their write-back was several times slower. The last partial block is padded for O_DIRECT and
// the file then cut to its exact length. Without O_DIRECT it writes through the page cache.
// Alignment of O_DIRECT transfers (buffer address, file offset and length): the largest logical
// block size in use, so it suits 512-byte and 4 KiB devices alike.
inline constexpr size_t kDirectAlign = 4096;

// A growable buffer aligned for O_DIRECT.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  // At least n bytes (rounded up to kDirectAlign); the contents are not kept when it grows.
  uint8_t* reserve(size_t n);
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A second descriptor of the file open as `fd`, with O_DIRECT and access mode `flags`
// (O_RDONLY or O_WRONLY): -1 when the file system refuses O_DIRECT (tmpfs) or the file cannot be
// reopened. Reopened through /proc/self/fd, so it also works when the path is unknown.
UniqueFd reopen_direct(int fd, int flags);

// Reads [offset, offset+n) of a file into `buf` with one large read, and returns where byte
// `offset` landed. With a direct descriptor the read is widened to whole aligned blocks (the
// file's end may cut the last one short); when the file system refuses the direct read, or
// direct_fd is -1, it reads through `fd` instead. Returns nullptr if the file ends first.
const uint8_t* read_span(int direct_fd, int fd, uint64_t offset, size_t n, AlignedBuffer& buf);

// Writes n bytes at `offset`: through direct_fd (O_DIRECT) when it is valid and p, n and offset
// are aligned to kDirectAlign, else, and for whatever a direct write refuses, through fd.
void write_span(int direct_fd, int fd, const uint8_t* p, size_t n, uint64_t offset, const std::string& what);

// Appends to a file written front to back, in blocks of 8 MiB with O_DIRECT where the file system
// allows it. A full block is written by a thread of its own while the next one fills, so a caller
// that produces the data (the swap-out pipeline) waits for the disk only when the disk is the
// slower of the two. A write error is thrown by the append or finish() after it.
class SequentialWriter {
 public:
  SequentialWriter(int fd, const std::string& path, std::string what);
  ~SequentialWriter();
  SequentialWriter(const SequentialWriter&) = delete;
  SequentialWriter& operator=(const SequentialWriter&) = delete;

  void append(const void* p, size_t n);
  void pad_to(uint64_t offset);
  // Writes what is buffered, waits for every write, and sets the file's length; call once, at
  // the end.
  void finish();
  uint64_t offset() const { return offset_ + used_; }
  uint64_t bytes_written() const { return written_; }
  bool direct() const { return direct_fd_ >= 0; }

 private:
  void hand_off(size_t n);
  void wait_idle();
  void write_block(const uint8_t* block, size_t n, uint64_t offset);
  void writer_main();

  int fd_;
  int direct_fd_ = -1;
  std::string what_;
  uint64_t offset_ = 0;  // of the block being filled
  uint64_t written_ = 0;
  uint8_t* buffers_[2] = {nullptr, nullptr};
  int filling_ = 0;
  size_t used_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  const uint8_t* in_flight_ = nullptr;  // the block the writer thread owns, if any
  size_t in_flight_size_ = 0;
  uint64_t in_flight_offset_ = 0;
  bool quit_ = false;
  std::exception_ptr error_;
  std::thread writer_;
};

}  // namespace nvhv::persistence::swapio
