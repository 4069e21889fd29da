#pragma once
// Holes in a file backing. Guest RAM the guest never wrote is a hole in its image file (or an
// allocated but unwritten extent) and reads as zero. Reading it through the mapping costs a page
// fault and, on tmpfs, allocates or zeroes a page per hole (a swap-out of a mostly-unused guest
// would fill the image). So a swap-out asks the file system where the data is
// (SEEK_DATA/SEEK_HOLE) and reads only that.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "persistence/swap_sparse.hpp"

namespace nvhv::persistence::swapholes {

// Whether `fd` is a regular file, the only kind whose holes SEEK_DATA reports (on a character
// device such as device-DAX, lseek may succeed without meaning anything).
bool has_holes(int fd);

// Walks [offset, offset + length) of a file (both multiples of 4 KiB) front to back on a thread of
// its own, while the caller uses what it found so far and waits only for what it has not found
// yet. (Treating the unwalked part as data instead would not pay: workers skip holes faster than
// any walk finds them, and reading a hole on tmpfs fills it.) Each SEEK_HOLE walks the data up to
// the next hole: per extent on ext4 or XFS, page by page on tmpfs (about 15 ms per GiB there).
// A page partly in data counts as data; when the file system cannot tell, the rest is data
// (treating a hole as data is only slower, never wrong).
class DataFinder {
 public:
  // fd -1 or not a regular file (has_holes): everything is data, no thread.
  DataFinder(int fd, uint64_t offset, uint64_t length);
  ~DataFinder();
  DataFinder(const DataFinder&) = delete;
  DataFinder& operator=(const DataFinder&) = delete;

  // The data pages among [first, first + count) of the range, as runs relative to `first`,
  // replacing what `out` held, once the walk got past them. Safe from any thread.
  void runs_in(uint64_t first, uint64_t count, std::vector<swapsparse::PageRun>& out) const;

  // Waits until the walk is over (tests, and callers that want the whole map).
  void wait();

 private:
  void walk(int fd, uint64_t offset, uint64_t length);

  mutable std::mutex mutex_;
  mutable std::condition_variable advanced_;
  bool walking_ = false;
  std::vector<swapsparse::PageRun> runs_;  // in order, pages of the whole range
  uint64_t known_pages_ = 0;               // pages [0, known_pages_) are mapped by runs_
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The data runs of [offset, offset + length) of `fd`, relative to `offset`, the walk awaited.
std::vector<swapsparse::PageRun> data_runs(int fd, uint64_t offset, uint64_t length);

}  // namespace nvhv::persistence::swapholes
