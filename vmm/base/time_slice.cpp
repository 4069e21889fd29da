#include "vmm/base/time_slice.hpp"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace nvhv {
namespace {

// struct sched_attr of sched_setattr(2); glibc 2.36 has no wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;  // for SCHED_OTHER since 6.12: the requested slice, in ns
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

bool read_attr(SchedAttr& attr) {
  attr = SchedAttr{};
  return ::syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) == 0;
}

}  // namespace

bool request_time_slice(std::chrono::microseconds slice) {
  SchedAttr attr{};
  if (!read_attr(attr) || attr.sched_policy != SCHED_OTHER) return false;
  attr.size = sizeof attr;
  attr.sched_flags = 0;  // not SCHED_FLAG_KEEP_PARAMS: it would skip the slice too; the nice value read above stays
  attr.sched_runtime = static_cast<uint64_t>(std::chrono::nanoseconds(slice).count());
  if (::syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return false;
  const auto now = current_time_slice();
  return now && *now == slice;
}

std::optional<std::chrono::microseconds> current_time_slice() {
  SchedAttr attr{};
  if (!read_attr(attr) || attr.sched_runtime == 0) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(attr.sched_runtime));
}

}  // namespace nvhv
