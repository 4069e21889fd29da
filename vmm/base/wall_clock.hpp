#pragma once
// Wall-clock time for records that must still mean something after a reboot or on another host
// (when a checkpoint was saved or committed, when a swap file was made): CLOCK_REALTIME in ns.
#include <time.h>

#include <cstdint>

namespace nvhv {

inline uint64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace nvhv
