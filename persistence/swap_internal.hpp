#pragma once
// Helpers shared by the swap writer and reader; not part of the engine's interface.
#include <zstd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>

namespace nvhv::persistence::swapimpl {

// True when n bytes at p are all zero. Comparing the buffer with itself shifted by 16 bytes uses
// libc's vectorised memcmp without a zero buffer as large as a chunk.
inline bool is_zero(const uint8_t* p, size_t n) {
  static const uint8_t zeros[16] = {};
  if (n <= 16) return std::memcmp(p, zeros, n) == 0;
  return std::memcmp(p, zeros, 16) == 0 && std::memcmp(p, p + 16, n - 16) == 0;
}

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
using CCtxPtr = std::unique_ptr<ZSTD_CCtx, CCtxDeleter>;
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxDeleter>;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace nvhv::persistence::swapimpl
