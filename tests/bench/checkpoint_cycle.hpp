#pragma once
// The checkpoint benchmark's unit of work: a guest runs for a while, is saved like at a power
// failure (the VMM exits), and a new VMM process restores it. One function per VMM runs
// `cycles` of these on one machine shape and medium and returns every figure it measured.
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/bench/bench_process.hpp"

namespace nvhv::bench {

struct CycleSetup {
  int vcpus = 1;
  int mem_mib = 256;
  std::string cmdline;             // testos' command line
  std::string dir;                 // on the medium under test: image / RAM file / state file
  int cycles = 15;
  std::chrono::milliseconds dwell{150};  // guest run time before each save
};

// Figure name -> one sample per cycle, in microseconds (or bytes where the name says so).
using Samples = std::map<std::string, std::vector<double>>;

// Throw BrokenRun when a VMM does not do its job (no boot, no checkpoint, no resume, lost ticks):
// the benchmark then fails; a slow VMM is only reported.
struct BrokenRun : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Samples run_nvhv_cycles(const CycleSetup& s);
// firmware: filled with "qboot" or "SeaBIOS".
Samples run_qemu_cycles(const CycleSetup& s, std::string& firmware);

// Follows testos' tick lines across save/restore cycles: every tick must be the previous one
// plus one, and a restored guest must go on exactly where the saved one stopped. A save can cut a
// line in two (the saved VMM flushes the half it has, the restored guest prints the rest), so the
// cut part is carried into the next process. Throws BrokenRun on any gap.
class TickContinuity {
 public:
  explicit TickContinuity(std::string what) : what_(std::move(what)) {}
  // All stdout of a VMM process that ended at a save, processes in order (the first is the cold boot).
  void saved(const std::vector<Line>& lines);
  // The first line the restored process printed: it must complete the next tick line.
  void check_first(const Line& first) const;

 private:
  std::string what_;
  long last_ = 0;        // last complete tick
  std::string pending_;  // a line the last save cut, carried into the next process
};

// Any "testos: error|exception|... CORRUPT" line: throws BrokenRun.
void check_guest_healthy(const std::vector<Line>& lines, const std::string& what);

double micros(Clock::time_point a, Clock::time_point b);

}  // namespace nvhv::bench
