#include "persistence/swap_holes.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "persistence/swap_format.hpp"

namespace nvhv::persistence::swapholes {

using swapfmt::kPage;
using swapsparse::PageRun;

namespace {

// A file scattered finely enough to need more runs than this is read whole past that point: the
// map stays small (16 MiB at most) for any guest.
constexpr size_t kMaxRuns = 1u << 20;

}  // namespace

bool has_holes(int fd) {
  struct stat st{};
  return fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

DataFinder::DataFinder(int fd, uint64_t offset, uint64_t length) {
  if (length < kPage || !has_holes(fd)) return;
  walking_ = true;
  try {
    thread_ = std::thread([this, fd, offset, length] { walk(fd, offset, length); });
  } catch (const std::system_error&) {
    walking_ = false;  // no thread to spare: every page is read, as without holes
  }
}

DataFinder::~DataFinder() {
  stop_ = true;
  wait();
}

void DataFinder::wait() {
  if (thread_.joinable()) thread_.join();
}

void DataFinder::walk(int fd, uint64_t offset, uint64_t length) {
  const uint64_t end = offset + length;
  uint64_t at = offset;
  struct Done {
    DataFinder& f;
    ~Done() {
      std::lock_guard lock(f.mutex_);
      f.walking_ = false;
      f.advanced_.notify_all();
    }
  } done{*this};
  auto publish = [&](uint64_t known_to, const PageRun* run) {
    std::lock_guard lock(mutex_);
    advanced_.notify_all();
    if (run) {
      // Each run starts where the walk got to, at or after the previous one's end.
      if (!runs_.empty() && runs_.back().first + runs_.back().count == run->first)
        runs_.back().count += run->count;
      else
        runs_.push_back(*run);
    }
    known_pages_ = (known_to - offset) / kPage;
  };
  while (at < end && !stop_) {
    // Only lseek's result is used, never the file position it moves.
    const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno != ENXIO) return;  // cannot tell: the rest stays data
    if (data < 0 || static_cast<uint64_t>(data) >= end) return publish(end, nullptr);  // no data after `at`
    const uint64_t first = std::max(offset, static_cast<uint64_t>(data) / kPage * kPage);
    publish(first, nullptr);  // [at, first) is a hole
    if (runs_.size() == kMaxRuns) return;
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole <= data) return;
    const uint64_t last = std::min(end, (static_cast<uint64_t>(hole) + kPage - 1) / kPage * kPage);
    const PageRun run{(first - offset) / kPage, (last - first) / kPage};
    publish(last, &run);
    at = last;
  }
}

void DataFinder::runs_in(uint64_t first, uint64_t count, std::vector<PageRun>& out) const {
  out.clear();
  const uint64_t end = first + count;
  std::unique_lock lock(mutex_);
  advanced_.wait(lock, [&] { return known_pages_ >= end || !walking_; });
  if (known_pages_ < end) {
    out.push_back({0, count});
    return;
  }
  // The first run that ends after `first`.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), first,
                             [](uint64_t page, const PageRun& r) { return page < r.first + r.count; });
  for (; it != runs_.end() && it->first < end; ++it) {
    const uint64_t a = std::max(first, it->first), b = std::min(end, it->first + it->count);
    out.push_back({a - first, b - a});
  }
}

std::vector<PageRun> data_runs(int fd, uint64_t offset, uint64_t length) {
  DataFinder finder(fd, offset, length);
  finder.wait();
  std::vector<PageRun> out;
  finder.runs_in(0, length / kPage, out);
  return out;
}

}  // namespace nvhv::persistence::swapholes
