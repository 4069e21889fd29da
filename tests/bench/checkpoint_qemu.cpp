// QEMU's side of the checkpoint benchmark, the closest QEMU 7.2 comes to nvhv's power-fail path:
// guest RAM in a shared memory-backend-file (so it is already "saved" in the file), migration
// capability x-ignore-shared (so the migration stream skips it and carries only vCPU and device
// state), and the VM stopped before saving, like at a power failure.
//   save:    QMP stop; migrate "exec:cat > STATE" (7.2 has no file: URI) until the MIGRATION
//            event says completed; then fdatasync of the RAM file and the state file, which is
//            what makes the save durable (nvhv's figure includes its msync of dirty RAM).
//   restore: qemu ... -incoming defer; over QMP the same capabilities, migrate-incoming
//            "exec:cat STATE", MIGRATION completed, cont; then the first tick line.
// The saved VM records that it was paused, so the restored one waits for `cont`.
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <regex>
#include <thread>

#include "tests/bench/bench_guests.hpp"
#include "tests/bench/checkpoint_cycle.hpp"
#include "tests/bench/proc_stats.hpp"
#include "tests/bench/qmp_client.hpp"

namespace nvhv::bench {
namespace {

using namespace std::chrono_literals;

const std::regex kAnyLine("");

struct Running {
  std::unique_ptr<Process> process;
  std::unique_ptr<QmpClient> qmp;
};

void set_capabilities(QmpClient& q) {
  q.execute("migrate-set-capabilities", {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}},
                                                           {{"capability", "events"}, {"state", true}}}}});
}

void sync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 || ::fdatasync(fd) != 0) throw BrokenRun("fdatasync " + path + " failed");
  ::close(fd);
}

class QemuCycles {
 public:
  explicit QemuCycles(const CycleSetup& s)
      : s_(s), state_(s.dir + "/qemu-state.bin"), what_("QEMU " + std::to_string(s.vcpus) + " vCPU in " + s.dir), ticks_(what_) {
    g_.vcpus = s.vcpus;
    g_.mem_mib = s.mem_mib;
    g_.cmdline = s.cmdline;
    g_.ram_file = s.dir + "/qemu-ram.img";
    g_.qmp_socket = s.dir + "/qmp.sock";
  }
  std::string firmware() const { return qemu_firmware(g_); }

  void cold_boot() {
    ::unlink(g_.qmp_socket.c_str());
    vm_.process = std::make_unique<Process>(qemu_argv(g_));
    vm_.qmp = std::make_unique<QmpClient>(g_.qmp_socket, 30s);
    set_capabilities(*vm_.qmp);
    // SeaBIOS (needed for an MP table with two vCPUs) runs emulated here: about 10 s.
    if (!vm_.process->wait_stdout(std::regex("testos: tick 1 ok"), 120s))
      throw BrokenRun(what_ + ": cold boot did not reach \"testos: tick 1 ok\"\n" + vm_.process->describe());
  }

  void save(Samples* out) {
    check_guest_healthy(vm_.process->stdout_lines(), what_);
    auto& q = *vm_.qmp;
    const auto t0 = Clock::now();
    q.execute("stop");
    const auto t1 = Clock::now();
    q.execute("migrate", {{"uri", "exec:cat > " + state_}});
    auto ev = q.wait_event("MIGRATION", {"completed", "failed", "cancelled"}, 60s);
    if (!ev || ev->data["data"].value("status", "") != "completed")
      throw BrokenRun(what_ + ": migrate to " + state_ + " did not complete");
    const auto t2 = ev->at;
    // QEMU reports completed once it has written the stream into the pipe; `cat` may still be
    // writing its last bytes, so the state file's fdatasync can come marginally early.
    sync_file(g_.ram_file);
    sync_file(state_);
    const auto t3 = Clock::now();
    try {
      q.execute("quit", nullptr, 5s);
    } catch (const std::exception&) {
      // QEMU may close the socket before its reply arrives.
    }
    auto exit = vm_.process->wait_exit(30s);
    if (!exit) throw BrokenRun(what_ + ": QEMU did not quit");
    ticks_.saved(vm_.process->stdout_lines());
    vm_ = {};
    if (out) {
      (*out)["qemu_stop_us"].push_back(micros(t0, t1));
      (*out)["qemu_migrate_us"].push_back(micros(t1, t2));
      (*out)["qemu_stop_migrate_us"].push_back(micros(t0, t2));
      (*out)["qemu_fdatasync_us"].push_back(micros(t2, t3));
      (*out)["qemu_durable_save_us"].push_back(micros(t0, t3));
    }
  }

  void restore(Samples* out) {
    ::unlink(g_.qmp_socket.c_str());
    QemuGuest g = g_;
    g.incoming = "defer";
    vm_.process = std::make_unique<Process>(qemu_argv(g));
    auto& p = *vm_.process;
    vm_.qmp = std::make_unique<QmpClient>(g_.qmp_socket, 30s);
    auto& q = *vm_.qmp;
    const auto t_qmp = Clock::now();
    set_capabilities(q);
    q.execute("migrate-incoming", {{"uri", "exec:cat " + state_}});
    auto ev = q.wait_event("MIGRATION", {"completed", "failed", "cancelled"}, 60s);
    if (!ev || ev->data["data"].value("status", "") != "completed")
      throw BrokenRun(what_ + ": incoming migration from " + state_ + " did not complete\n" + p.describe());
    q.execute("cont");
    const auto t_cont = Clock::now();
    auto first = p.wait_stdout(kAnyLine, 20s);
    const SchedTimes t = sched_times(p.pid());
    if (!first) throw BrokenRun(what_ + ": the restored guest printed nothing\n" + p.describe());
    ticks_.check_first(*first);
    if (out) {
      (*out)["qemu_exec_to_qmp_us"].push_back(micros(p.spawned(), t_qmp));
      (*out)["qemu_exec_to_loaded_us"].push_back(micros(p.spawned(), ev->at));
      (*out)["qemu_exec_to_cont_us"].push_back(micros(p.spawned(), t_cont));
      (*out)["qemu_exec_to_first_tick_us"].push_back(micros(p.spawned(), first->at));
      if (t.valid) {
        (*out)["qemu_restore_on_cpu_us"].push_back(t.cpu_us());
        (*out)["qemu_restore_cpu_wait_us"].push_back(t.wait_us());
      }
    }
  }

 private:
  const CycleSetup& s_;
  QemuGuest g_;
  std::string state_, what_;
  Running vm_;
  TickContinuity ticks_;
};

}  // namespace

Samples run_qemu_cycles(const CycleSetup& s, std::string& firmware) {
  QemuCycles c(s);
  firmware = c.firmware();
  Samples out;
  c.cold_boot();
  for (int i = 0; i < s.cycles; ++i) {
    std::this_thread::sleep_for(s.dwell);
    c.save(&out);
    c.restore(&out);
  }
  std::this_thread::sleep_for(s.dwell);
  c.save(nullptr);  // leaves QEMU stopped and its files behind for the scratch dir to remove
  return out;
}

}  // namespace nvhv::bench
