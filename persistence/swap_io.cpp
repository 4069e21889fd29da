#include "persistence/swap_io.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <ctime>

#include <fmt/core.h>

#include "persistence/swap_hash.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/wall_clock.hpp"

namespace nvhv::persistence::swapio {
namespace {

constexpr size_t kBufferSize = 8u << 20;

uint64_t align_down(uint64_t v) { return v / kDirectAlign * kDirectAlign; }
uint64_t align_up(uint64_t v) { return (v + kDirectAlign - 1) / kDirectAlign * kDirectAlign; }
bool aligned(uint64_t v) { return v % kDirectAlign == 0; }

// Errors that mean "not like this" for a direct transfer (alignment or file-system rules), after
// which the same transfer through the page cache is expected to work.
bool direct_refused(int err) { return err == EINVAL || err == EOPNOTSUPP || err == ENOTSUP; }

}  // namespace

bool pread_full(int fd, void* buf, size_t n, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SystemError(errno, fmt::format("read {} bytes at offset {}", n, offset));
    }
    if (r == 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

void pwrite_full(int fd, const void* buf, size_t n, uint64_t offset, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SystemError(errno, fmt::format("write {} at offset {}", what, offset));
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

void fsync_or_throw(int fd, const std::string& what) {
  if (::fsync(fd) != 0) throw SystemError(errno, fmt::format("fsync {}", what));
}

void fsync_directory(const std::filesystem::path& dir) {
  const std::string d = dir.empty() ? "." : dir.string();
  UniqueFd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw SystemError(errno, fmt::format("open directory {}", d));
  fsync_or_throw(fd.get(), fmt::format("directory {}", d));
}

uint64_t file_size(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw SystemError(errno, fmt::format("fstat {}", what));
  return static_cast<uint64_t>(st.st_size);
}

bool try_lock(int fd, bool exclusive) {
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return true;
  if (errno == EWOULDBLOCK) return false;
  throw SystemError(errno, "flock");
}

std::string absolute_path(const std::filesystem::path& p) {
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(p), ec);
  return (ec ? std::filesystem::absolute(p).lexically_normal() : canonical).string();
}

uint64_t path_hash(const std::string& absolute) { return XXH3_64bits(absolute.data(), absolute.size()); }

uint64_t random_id() {
  uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = realtime_ns() ^ (uint64_t(::getpid()) << 32);
  }
  return v;
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

uint8_t* AlignedBuffer::reserve(size_t n) {
  if (n <= size_ && data_) return data_;
  const size_t size = static_cast<size_t>(align_up(std::max<size_t>(n, 1)));
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kDirectAlign, size));
  if (!p) throw std::bad_alloc();
  std::free(data_);
  data_ = p;
  size_ = size;
  return data_;
}

UniqueFd reopen_direct(int fd, int flags) {
  const std::string link = fmt::format("/proc/self/fd/{}", fd);
  return UniqueFd(::open(link.c_str(), flags | O_DIRECT | O_CLOEXEC));
}

const uint8_t* read_span(int direct_fd, int fd, uint64_t offset, size_t n, AlignedBuffer& buf) {
  if (direct_fd >= 0) {
    const uint64_t begin = align_down(offset);
    const uint64_t end = align_up(offset + n);
    uint8_t* p = buf.reserve(static_cast<size_t>(end - begin));
    uint64_t got = 0;
    bool refused = false;
    // Sized reads of whole blocks: short only at the end of the file (or on a signal).
    while (begin + got < offset + n) {
      const ssize_t r = ::pread(direct_fd, p + got, static_cast<size_t>(end - begin - got), static_cast<off_t>(begin + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && direct_refused(errno)) {
        refused = true;
        break;
      }
      if (r < 0) throw SystemError(errno, fmt::format("read {} bytes at offset {}", end - begin - got, begin + got));
      if (r == 0) return nullptr;
      got += static_cast<uint64_t>(r);
      if (!aligned(got) && begin + got < offset + n) {
        refused = true;  // a short read inside the file: finish through the page cache
        break;
      }
    }
    if (!refused) return p + (offset - begin);
  }
  uint8_t* p = buf.reserve(n);
  return pread_full(fd, p, n, offset) ? p : nullptr;
}

void write_span(int direct_fd, int fd, const uint8_t* p, size_t n, uint64_t offset, const std::string& what) {
  size_t done = 0;
  if (direct_fd >= 0 && aligned(reinterpret_cast<uintptr_t>(p)) && aligned(n) && aligned(offset)) {
    while (done < n) {
      const ssize_t r = ::pwrite(direct_fd, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && direct_refused(errno)) break;
      if (r < 0) throw SystemError(errno, fmt::format("write {} at offset {}", what, offset + done));
      done += static_cast<size_t>(r);
      if (!aligned(done)) break;  // a short direct write: the rest through the page cache
    }
  }
  if (done < n) pwrite_full(fd, p + done, n - done, offset + done, what);
}

SequentialWriter::SequentialWriter(int fd, const std::string& path, std::string what)
    : fd_(fd), what_(std::move(what)) {
  for (auto& b : buffers_) {
    b = static_cast<uint8_t*>(std::aligned_alloc(kDirectAlign, kBufferSize));
    if (!b) {
      std::free(buffers_[0]);
      throw std::bad_alloc();
    }
  }
  direct_fd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);  // -1: not supported here
  writer_ = std::thread([this] { writer_main(); });
}

SequentialWriter::~SequentialWriter() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  writer_.join();  // after the block in flight, if any
  if (direct_fd_ >= 0) ::close(direct_fd_);
  for (auto* b : buffers_) std::free(b);
}

void SequentialWriter::append(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const size_t take = std::min(n, kBufferSize - used_);
    std::memcpy(buffers_[filling_] + used_, b, take);
    used_ += take;
    b += take;
    n -= take;
    if (used_ == kBufferSize) hand_off(used_);
  }
}

void SequentialWriter::pad_to(uint64_t target) {
  static const uint8_t zeros[4096] = {};
  while (offset() < target) append(zeros, std::min<uint64_t>(sizeof zeros, target - offset()));
}

void SequentialWriter::finish() {
  const uint64_t end = offset();
  if (used_ > 0) {
    // O_DIRECT writes whole blocks: pad with zeros, then cut the file back to its length.
    const size_t padded = direct() ? (used_ + kDirectAlign - 1) / kDirectAlign * kDirectAlign : used_;
    std::memset(buffers_[filling_] + used_, 0, padded - used_);
    hand_off(padded);
  }
  wait_idle();
  if (::ftruncate(fd_, static_cast<off_t>(end)) != 0) throw SystemError(errno, fmt::format("truncate {}", what_));
  written_ -= offset_ - end;
  offset_ = end;
}

void SequentialWriter::wait_idle() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !in_flight_; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void SequentialWriter::hand_off(size_t n) {
  wait_idle();  // the other buffer is free once its write is done
  {
    std::lock_guard lock(mu_);
    in_flight_ = buffers_[filling_];
    in_flight_size_ = n;
    in_flight_offset_ = offset_;
  }
  cv_.notify_all();
  filling_ ^= 1;
  offset_ += n;
  written_ += n;
  used_ = 0;
}

void SequentialWriter::writer_main() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return in_flight_ || quit_; });
    if (!in_flight_) return;
    const uint8_t* block = in_flight_;
    const size_t n = in_flight_size_;
    const uint64_t offset = in_flight_offset_;
    lock.unlock();
    std::exception_ptr failed;
    try {
      write_block(block, n, offset);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    if (failed && !error_) error_ = failed;
    in_flight_ = nullptr;
    cv_.notify_all();
  }
}

void SequentialWriter::write_block(const uint8_t* block, size_t n, uint64_t offset) {
  size_t done = 0;
  if (direct()) {
    const ssize_t r = ::pwrite(direct_fd_, block, n, static_cast<off_t>(offset));
    if (r > 0) done = static_cast<size_t>(r);
    // A short or refused direct write: the rest goes through the page cache, which takes any size.
    if (r < 0 && errno != EINVAL && errno != EINTR && errno != EAGAIN)
      throw SystemError(errno, fmt::format("write {} at offset {}", what_, offset));
  }
  if (done < n) pwrite_full(fd_, block + done, n - done, offset + done, what_);
}

}  // namespace nvhv::persistence::swapio
