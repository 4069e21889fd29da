#pragma once
// Helpers shared by the swap engine's unit tests.
#include <cstdint>
#include <functional>
#include <string>

#include "persistence/swap.hpp"

namespace nvhv::persistence::test {

// Small chunks (16 pages): many of them in little RAM, and a one-word page bitmap with unused bits.
inline constexpr uint32_t kSmallChunk = 64 * 1024;

inline SwapTuning small_chunks(int level = 1) {
  SwapTuning t;
  t.chunk_size = kSmallChunk;
  t.level = level;
  t.threads = 2;
  return t;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The message of the SwapError `f` throws, or "(not refused)".
inline std::string refusal_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const SwapError& e) {
    return e.what();
  }
  return "(not refused)";
}

}  // namespace nvhv::persistence::test
