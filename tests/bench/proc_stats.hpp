#pragma once
// Reading a process's memory and scheduling figures from /proc: memory totals, per-mapping
// figures and, through pagemap, how many pages of one address range are resident (the guest RAM
// a VMM has touched); and how long its threads ran and waited for a CPU (schedstat).
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nvhv::bench {

struct Mapping {
  uint64_t start = 0, end = 0;  // [start, end)
  uint64_t file_offset = 0;
  std::string perms;
  std::string path;  // empty for anonymous
  uint64_t rss_kib = 0, pss_kib = 0;
};

struct MemoryTotals {
  uint64_t rss_kib = 0, pss_kib = 0;                            // smaps_rollup
  uint64_t rss_anon_kib = 0, rss_file_kib = 0, rss_shmem_kib = 0;  // status
};

MemoryTotals memory_totals(pid_t pid);
std::vector<Mapping> mappings(pid_t pid);

// The host address range of guest RAM: for a file, the bytes [offset, offset+size) of path as
// mapped; for anonymous RAM (path empty), the mapping of exactly size bytes (there must be one).
struct Range {
  uint64_t start = 0, end = 0;
};
std::optional<Range> find_guest_ram(const std::vector<Mapping>& maps, const std::string& path, uint64_t offset, uint64_t size);

// Resident bytes in [r.start, r.end) from /proc/PID/pagemap (bit 63, "page present").
uint64_t resident_bytes(pid_t pid, Range r);

// Rss per mapped object ("[anon]", "[heap]", library paths...), largest first, leaving out the
// guest RAM range (its mapping's other pages stay counted).
struct Contributor {
  std::string name;
  double rss_kib;
};
std::vector<Contributor> rss_by_object(const std::vector<Mapping>& maps, Range guest, uint64_t guest_resident_bytes);

// Per live thread of pid (/proc/PID/task/*/schedstat): time on a CPU and time runnable but
// waiting for one. On a loaded machine the second explains slow figures; what a latency holds
// beyond both is time the process slept (in the kernel or waiting for its other threads).
struct ThreadSched {
  std::string name;  // comm: "vcpu0", "event-loop", ...
  double cpu_us = 0, wait_us = 0;
};
struct SchedTimes {
  bool valid = false;
  std::map<int, ThreadSched> threads;  // by TID
  // Sums over threads whose name starts with prefix ("" for all).
  double cpu_us(const std::string& prefix = "") const;
  double wait_us(const std::string& prefix = "") const;
};
SchedTimes sched_times(pid_t pid);
// Waiting-for-a-CPU time between two snapshots, over threads alive in both whose name starts
// with prefix ("" for all). Threads that ended in between are left out.
double wait_between_us(const SchedTimes& before, const SchedTimes& after, const std::string& prefix = "");

}  // namespace nvhv::bench
