#include "tests/bench/proc_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace nvhv::bench {
namespace {

std::string proc_path(pid_t pid, const char* what) { return "/proc/" + std::to_string(pid) + "/" + what; }

// "Key:   123 kB" -> 123 when the line starts with key.
bool field_kib(const std::string& line, const char* key, uint64_t& out) {
  const size_t n = std::char_traits<char>::length(key);
  if (line.compare(0, n, key) != 0) return false;
  out = std::stoull(line.substr(n));
  return true;
}

}  // namespace

MemoryTotals memory_totals(pid_t pid) {
  MemoryTotals t;
  std::ifstream rollup(proc_path(pid, "smaps_rollup"));
  if (!rollup) throw std::runtime_error("cannot read " + proc_path(pid, "smaps_rollup"));
  for (std::string line; std::getline(rollup, line);) {
    field_kib(line, "Rss:", t.rss_kib);
    field_kib(line, "Pss:", t.pss_kib);
  }
  std::ifstream status(proc_path(pid, "status"));
  for (std::string line; std::getline(status, line);) {
    field_kib(line, "RssAnon:", t.rss_anon_kib);
    field_kib(line, "RssFile:", t.rss_file_kib);
    field_kib(line, "RssShmem:", t.rss_shmem_kib);
  }
  return t;
}

std::vector<Mapping> mappings(pid_t pid) {
  std::ifstream f(proc_path(pid, "smaps"));
  if (!f) throw std::runtime_error("cannot read " + proc_path(pid, "smaps"));
  std::vector<Mapping> out;
  for (std::string line; std::getline(f, line);) {
    // A mapping header is "start-end perms offset dev inode [path]"; field lines are "Key: value".
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space && line.find(':') > space) {
      Mapping m;
      std::istringstream is(line);
      std::string range, offset, dev, inode;
      is >> range >> m.perms >> offset >> dev >> inode;
      m.start = std::stoull(range.substr(0, dash), nullptr, 16);
      m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
      m.file_offset = std::stoull(offset, nullptr, 16);
      std::getline(is >> std::ws, m.path);
      out.push_back(std::move(m));
      continue;
    }
    if (out.empty()) continue;
    field_kib(line, "Rss:", out.back().rss_kib);
    field_kib(line, "Pss:", out.back().pss_kib);
  }
  return out;
}

std::optional<Range> find_guest_ram(const std::vector<Mapping>& maps, const std::string& path, uint64_t offset, uint64_t size) {
  for (const auto& m : maps) {
    if (path.empty()) {
      // Anonymous guest RAM: nvhv's libpmem2 maps it as "/dev/zero (deleted)", QEMU without a name.
      const bool anon_like = m.path.empty() || m.path.rfind("/dev/zero", 0) == 0;
      if (anon_like && m.end - m.start == size) return Range{m.start, m.end};
      continue;
    }
    if (m.path != path || offset < m.file_offset || offset + size > m.file_offset + (m.end - m.start)) continue;
    const uint64_t start = m.start + (offset - m.file_offset);
    return Range{start, start + size};
  }
  return std::nullopt;
}

uint64_t resident_bytes(pid_t pid, Range r) {
  const long page = ::sysconf(_SC_PAGESIZE);
  int fd = ::open(proc_path(pid, "pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + proc_path(pid, "pagemap"));
  uint64_t resident = 0;
  std::vector<uint64_t> entries(4096);
  for (uint64_t addr = r.start; addr < r.end;) {
    const uint64_t pages = std::min<uint64_t>(entries.size(), (r.end - addr) / static_cast<uint64_t>(page));
    const off_t at = static_cast<off_t>(addr / static_cast<uint64_t>(page) * sizeof(uint64_t));
    ssize_t n = ::pread(fd, entries.data(), pages * sizeof(uint64_t), at);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("pagemap read failed");
    }
    const size_t got = static_cast<size_t>(n) / sizeof(uint64_t);
    for (size_t i = 0; i < got; ++i)
      if (entries[i] >> 63) resident += static_cast<uint64_t>(page);
    addr += got * static_cast<uint64_t>(page);
  }
  ::close(fd);
  return resident;
}

std::vector<Contributor> rss_by_object(const std::vector<Mapping>& maps, Range guest, uint64_t guest_resident_bytes) {
  std::map<std::string, double> by;
  for (const auto& m : maps) {
    double rss = static_cast<double>(m.rss_kib);
    if (m.start <= guest.start && guest.end <= m.end) rss -= static_cast<double>(guest_resident_bytes) / 1024.0;
    if (rss <= 0) continue;
    by[m.path.empty() ? "[anon]" : m.path] += rss;
  }
  std::vector<Contributor> out;
  for (auto& [name, kib] : by) out.push_back({name, kib});
  std::sort(out.begin(), out.end(), [](const Contributor& a, const Contributor& b) { return a.rss_kib > b.rss_kib; });
  return out;
}

SchedTimes sched_times(pid_t pid) {
  SchedTimes t;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(proc_path(pid, "task"), ec)) {
    std::ifstream f(task.path() / "schedstat");
    std::ifstream comm(task.path() / "comm");
    ThreadSched th;
    double cpu_ns = 0, wait_ns = 0;
    if (!(f >> cpu_ns >> wait_ns)) continue;  // the thread just ended
    std::getline(comm, th.name);
    th.cpu_us = cpu_ns / 1000.0;
    th.wait_us = wait_ns / 1000.0;
    t.threads[std::stoi(task.path().filename().string())] = th;
    t.valid = true;
  }
  return t;
}

double SchedTimes::cpu_us(const std::string& prefix) const {
  double sum = 0;
  for (auto& [tid, th] : threads)
    if (th.name.rfind(prefix, 0) == 0) sum += th.cpu_us;
  return sum;
}

double SchedTimes::wait_us(const std::string& prefix) const {
  double sum = 0;
  for (auto& [tid, th] : threads)
    if (th.name.rfind(prefix, 0) == 0) sum += th.wait_us;
  return sum;
}

double wait_between_us(const SchedTimes& before, const SchedTimes& after, const std::string& prefix) {
  double sum = 0;
  for (auto& [tid, th] : after.threads) {
    auto it = before.threads.find(tid);
    if (it == before.threads.end() || th.name.rfind(prefix, 0) != 0) continue;
    sum += th.wait_us - it->second.wait_us;
  }
  return sum;
}

}  // namespace nvhv::bench
