#include "vmm/base/log.hpp"

#include <unistd.h>

#include <atomic>

namespace nvhv::log {
namespace {
std::atomic<Level> g_level{Level::info};
}

void set_level(Level l) { g_level.store(l, std::memory_order_relaxed); }
Level level() { return g_level.load(std::memory_order_relaxed); }

void write(Level l, std::string_view message) {
  static constexpr const char* kPrefix[] = {"nvhv: error: ", "nvhv: warning: ", "nvhv: ", "nvhv: debug: "};
  std::string line = kPrefix[static_cast<int>(l)];
  line.append(message);
  line.push_back('\n');
  // One write(2) per line so concurrent threads never interleave within a line.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace nvhv::log
