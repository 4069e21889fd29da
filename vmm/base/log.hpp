#pragma once
// Minimal leveled logging to stderr, prefixed "nvhv: ". One line per call, written with a
// single write(2) so lines from different threads never interleave.
#include <fmt/core.h>
#include <string>
#include <string_view>

namespace nvhv::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

void set_level(Level level);
Level level();
void write(Level level, std::string_view message);

template <typename... Args>
void error(std::string_view f, Args&&... args) { write(Level::error, fmt::format(fmt::runtime(f), std::forward<Args>(args)...)); }
template <typename... Args>
void warn(std::string_view f, Args&&... args) { write(Level::warn, fmt::format(fmt::runtime(f), std::forward<Args>(args)...)); }
template <typename... Args>
void info(std::string_view f, Args&&... args) {
  if (level() >= Level::info) write(Level::info, fmt::format(fmt::runtime(f), std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view f, Args&&... args) {
  if (level() >= Level::debug) write(Level::debug, fmt::format(fmt::runtime(f), std::forward<Args>(args)...));
}

}  // namespace nvhv::log
