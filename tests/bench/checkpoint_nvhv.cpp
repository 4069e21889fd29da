// nvhv's side of the checkpoint benchmark: SIGPWR -> checkpoint -> exit 0, then `nvhv run` of
// the same config resumes it. nvhv's own figures come from its log lines; the external ones are
// taken here around kill(2), the pidfd exit notification and the lines' arrival.
#include <signal.h>

#include <memory>
#include <regex>
#include <thread>

#include "tests/bench/bench_guests.hpp"
#include "tests/bench/checkpoint_cycle.hpp"
#include "tests/bench/proc_stats.hpp"

namespace nvhv::bench {
namespace {

using namespace std::chrono_literals;

const std::regex kCheckpointLine(
    R"(power-fail checkpoint gen=(\d+) vcpu_us=(\d+) devices_us=(\d+) flush_us=(\d+) commit_us=(\d+) total_us=(\d+) flushed_bytes=(\d+))");
const std::regex kResumedLine(R"(resumed gen=(\d+) in (\d+) us)");
const std::regex kAnyLine("");

}  // namespace

Samples run_nvhv_cycles(const CycleSetup& s) {
  const std::string config =
      write_nvhv_config(s.dir, "ckpt", s.vcpus, s.mem_mib, s.cmdline, s.dir + "/nvhv-" + std::to_string(s.vcpus) + "cpu.img");
  const std::vector<std::string> argv = {nvhv_bin(), "run", config};
  const std::string what = "nvhv " + std::to_string(s.vcpus) + " vCPU in " + s.dir;
  Samples out;
  TickContinuity ticks(what);

  auto vm = std::make_unique<Process>(argv);
  if (!vm->wait_stdout(std::regex("testos: tick 1 ok"), 30s))
    throw BrokenRun(what + ": cold boot did not reach \"testos: tick 1 ok\"\n" + vm->describe());
  for (int i = 0; i < s.cycles; ++i) {
    std::this_thread::sleep_for(s.dwell);
    check_guest_healthy(vm->stdout_lines(), what);

    const SchedTimes s0 = sched_times(vm->pid());
    const auto sig = vm->signal(SIGPWR);
    auto line = vm->wait_stderr(kCheckpointLine, 20s);
    const SchedTimes s1 = sched_times(vm->pid());  // nvhv is still tearing down: its threads are there
    auto exit = vm->wait_exit(30s);
    if (!line || !exit || exit->status != 0)
      throw BrokenRun(what + ": SIGPWR did not end in a committed checkpoint and exit 0\n" + vm->describe());
    std::smatch m;
    std::regex_search(line->text, m, kCheckpointLine);
    const long generation = std::stol(m[1]);
    const char* names[] = {"vcpu_us", "devices_us", "flush_us", "commit_us", "total_us", "flushed_bytes"};
    for (int k = 0; k < 6; ++k) out[names[k]].push_back(std::stod(m[k + 2]));
    out["vcpu_plus_devices_us"].push_back(std::stod(m[2]) + std::stod(m[3]));
    out["sigpwr_to_committed_line_us"].push_back(micros(sig, line->at));
    out["sigpwr_to_exit_us"].push_back(micros(sig, exit->at));
    if (s0.valid && s1.valid) {
      out["checkpoint_cpu_wait_us"].push_back(wait_between_us(s0, s1));
      out["checkpoint_vcpu_wait_us"].push_back(wait_between_us(s0, s1, "vcpu"));
    }
    ticks.saved(vm->stdout_lines());

    vm = std::make_unique<Process>(argv);
    auto resumed = vm->wait_stderr(kResumedLine, 20s);
    auto first = vm->wait_stdout(kAnyLine, 20s);
    const SchedTimes t = sched_times(vm->pid());
    if (!resumed || !first) throw BrokenRun(what + ": the restarted nvhv did not resume and run\n" + vm->describe());
    std::regex_search(resumed->text, m, kResumedLine);
    if (std::stol(m[1]) != generation)
      throw BrokenRun(what + ": resumed gen=" + m[1].str() + ", the checkpoint was gen=" + std::to_string(generation));
    ticks.check_first(*first);
    out["resumed_in_us"].push_back(std::stod(m[2]));
    out["exec_to_resumed_line_us"].push_back(micros(vm->spawned(), resumed->at));
    out["exec_to_first_tick_us"].push_back(micros(vm->spawned(), first->at));
    if (t.valid) {
      out["resume_on_cpu_us"].push_back(t.cpu_us());
      out["resume_vcpu_on_cpu_us"].push_back(t.cpu_us("vcpu"));
      out["resume_cpu_wait_us"].push_back(t.wait_us());
    }
  }
  vm->signal(SIGTERM);
  if (!vm->wait_exit(30s)) throw BrokenRun(what + ": nvhv did not stop on SIGTERM");
  return out;
}

}  // namespace nvhv::bench
