// checkpoint_latency: power-fail checkpoint and resume of a 256 MiB testos guest with 1 and 2
// vCPUs, its image on tmpfs (/dev/shm: the CPU cost) and on a disk filesystem (/var/tmp: the
// msync cost), nvhv and QEMU side by side in the same run (checkpoint_nvhv.cpp,
// checkpoint_qemu.cpp say exactly what is timed).
//
// Targets for nvhv: checkpoint total <= 1 ms p99, vCPU + device state <= 100 us p99, resume
// <= 5 ms, and each >= 10x faster than QEMU's counterpart (compared at the median). Exit status 1
// only when a VMM fails to save, restore or run the guest; missed targets are reported.
//
// The guest prints a tick line every tick_ms (default 2, NVHV_BENCH_TICK_MS) and rewrites
// mem_mib (default 4, NVHV_BENCH_MEM_MIB) of RAM per tick. The external resume figure ends at
// the first tick line, so it includes up to one tick period of the guest waiting for its next
// deadline: kept short so that wait is small; the same applies to QEMU. Both VMMs are started
// through setpriv (so that they die with the bench); its cost, measured in the same run, is
// printed, and "net" rows subtract it from the exec -> first tick figures.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "vmm/base/spawn.hpp"

#include "tests/bench/bench_guests.hpp"
#include "tests/bench/bench_report.hpp"
#include "tests/bench/checkpoint_cycle.hpp"

namespace nvhv::bench {
namespace {

constexpr double kTotalUs = 1000, kStateUs = 100, kResumeUs = 5000, kFactor = 10;

struct Medium {
  std::string label;  // "tmpfs /dev/shm"
  std::string parent;
};

struct Result {
  std::string name;  // "1 vCPU, tmpfs /dev/shm"
  std::string key;   // "1cpu_tmpfs"
  Samples nvhv, qemu;
  std::string firmware;
};

std::string disk_parent() {
  for (const char* p : {"/var/tmp", "/tmp"})
    if (filesystem_type(p) != "tmpfs") return p;
  return "/var/tmp";
}

// Every VMM here is started through `setpriv --pdeathsig KILL --` (bench_process.cpp), so its
// exec figures include setpriv's own exec. Measured as setpriv running /bin/true minus /bin/true.
double setpriv_overhead_us(int runs) {
  auto median_us = [&](const std::vector<std::string>& argv) {
    std::vector<double> us;
    for (int i = 0; i < runs; ++i) {
      const auto t0 = Clock::now();
      wait_exit_status(spawn_process(argv));
      us.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()) / 1e3);
    }
    return stats(us).median;
  };
  const double with = median_us({"setpriv", "--pdeathsig", "KILL", "--", "true"});
  const double without = median_us({"true"});
  return std::max(0.0, with - without);
}

void add_net_of_harness(Samples& s, const std::string& gross_key, const std::string& net_key, double harness_us) {
  auto it = s.find(gross_key);
  if (it == s.end()) return;
  std::vector<double> net;
  for (double v : it->second) net.push_back(v - harness_us);
  s[net_key] = std::move(net);
}

std::string cell(const Samples& s, const std::string& key, double scale = 1e-3, int decimals = 3) {
  auto it = s.find(key);
  if (it == s.end() || it->second.empty()) return "-";
  Stats st = stats(it->second);
  return fixed(st.median * scale, decimals) + " / " + fixed(st.p99 * scale, decimals);
}

double median(const Samples& s, const std::string& key) {
  auto it = s.find(key);
  return it == s.end() ? 0 : stats(it->second).median;
}
double p99(const Samples& s, const std::string& key) {
  auto it = s.find(key);
  return it == s.end() ? 0 : stats(it->second).p99;
}

void print_figures(const std::vector<Result>& results, int cycles, bool have_qemu) {
  std::vector<std::string> header = {"figure (ms, p50 / p99 of " + std::to_string(cycles) + ")"};
  for (auto& r : results) header.push_back(r.name);
  Table t(header);
  auto row = [&](const std::string& label, bool qemu, const std::string& key, double scale = 1e-3, int decimals = 3) {
    if (qemu && !have_qemu) return;
    std::vector<std::string> cells = {label};
    for (auto& r : results) cells.push_back(cell(qemu ? r.qemu : r.nvhv, key, scale, decimals));
    t.row(cells);
  };
  row("nvhv checkpoint total_us", false, "total_us");
  row("  vcpu_us (pause + save vCPUs)", false, "vcpu_us");
  row("  devices_us (VM + devices)", false, "devices_us");
  row("  flush_us (prepare + RAM msync)", false, "flush_us");
  row("  commit_us", false, "commit_us");
  row("  flushed MiB", false, "flushed_bytes", 1.0 / (1 << 20), 2);
  row("nvhv SIGPWR -> checkpoint line", false, "sigpwr_to_committed_line_us");
  row("  nvhv threads waiting for a CPU", false, "checkpoint_cpu_wait_us");
  row("  of which vCPU threads", false, "checkpoint_vcpu_wait_us");
  row("nvhv SIGPWR -> exit", false, "sigpwr_to_exit_us");
  row("nvhv \"resumed in U us\"", false, "resumed_in_us");
  row("nvhv exec -> \"resumed\" line (vCPUs running)", false, "exec_to_resumed_line_us");
  row("  net of the harness's setpriv", false, "exec_to_resumed_line_net_us");
  row("nvhv exec -> first tick line", false, "exec_to_first_tick_us");
  row("  net of the harness's setpriv", false, "exec_to_first_tick_net_us");
  row("  of which on a CPU (all threads)", false, "resume_on_cpu_us");
  row("    vCPU threads (running the guest)", false, "resume_vcpu_on_cpu_us");
  row("  of which waiting for a CPU", false, "resume_cpu_wait_us");
  row("QEMU stop", true, "qemu_stop_us");
  row("QEMU migrate to state file", true, "qemu_migrate_us");
  row("QEMU fdatasync RAM + state", true, "qemu_fdatasync_us");
  row("QEMU save: stop+migrate+fdatasync", true, "qemu_durable_save_us");
  row("QEMU exec -> QMP connected", true, "qemu_exec_to_qmp_us");
  row("QEMU exec -> incoming completed", true, "qemu_exec_to_loaded_us");
  row("QEMU exec -> cont returned", true, "qemu_exec_to_cont_us");
  row("QEMU exec -> first tick line", true, "qemu_exec_to_first_tick_us");
  row("  net of the harness's setpriv", true, "qemu_exec_to_first_tick_net_us");
  row("  of which on a CPU (all threads)", true, "qemu_restore_on_cpu_us");
  row("  of which waiting for a CPU", true, "qemu_restore_cpu_wait_us");
  t.print();
}

// One row per target and configuration; returns a JSON array of the same.
nlohmann::json print_targets(const std::vector<Result>& results, bool have_qemu) {
  Table t({"target", "configuration", "nvhv p50", "nvhv p99", "met"});
  nlohmann::json out = nlohmann::json::array();
  auto add = [&](const std::string& target, const Result& r, double p50, double p99v, bool met) {
    t.row({target, r.name, fixed(p50, 0) + " us", fixed(p99v, 0) + " us", met_text(met)});
    out.push_back({{"target", target}, {"configuration", r.key}, {"p50_us", p50}, {"p99_us", p99v}, {"met", met}});
  };
  for (auto& r : results) {
    add("checkpoint total_us p99 <= 1000 us", r, median(r.nvhv, "total_us"), p99(r.nvhv, "total_us"), p99(r.nvhv, "total_us") <= kTotalUs);
    add("notice: SIGPWR -> committed line p99 <= 1000 us", r, median(r.nvhv, "sigpwr_to_committed_line_us"),
        p99(r.nvhv, "sigpwr_to_committed_line_us"), p99(r.nvhv, "sigpwr_to_committed_line_us") <= kTotalUs);
    add("vcpu_us + devices_us p99 <= 100 us", r, median(r.nvhv, "vcpu_plus_devices_us"), p99(r.nvhv, "vcpu_plus_devices_us"),
        p99(r.nvhv, "vcpu_plus_devices_us") <= kStateUs);
    add("resume, nvhv's U, p99 <= 5000 us", r, median(r.nvhv, "resumed_in_us"), p99(r.nvhv, "resumed_in_us"),
        p99(r.nvhv, "resumed_in_us") <= kResumeUs);
    add("resume, exec -> vCPUs running, net of setpriv, p99 <= 5000 us", r, median(r.nvhv, "exec_to_resumed_line_net_us"),
        p99(r.nvhv, "exec_to_resumed_line_net_us"), p99(r.nvhv, "exec_to_resumed_line_net_us") <= kResumeUs);
    add("resume, exec -> first tick, p99 <= 5000 us", r, median(r.nvhv, "exec_to_first_tick_us"), p99(r.nvhv, "exec_to_first_tick_us"),
        p99(r.nvhv, "exec_to_first_tick_us") <= kResumeUs);
    add("resume, the same net of setpriv, p99 <= 5000 us", r, median(r.nvhv, "exec_to_first_tick_net_us"),
        p99(r.nvhv, "exec_to_first_tick_net_us"), p99(r.nvhv, "exec_to_first_tick_net_us") <= kResumeUs);
  }
  t.print();
  if (!have_qemu) return out;

  Table c({"nvhv vs QEMU (medians)", "configuration", "nvhv", "QEMU", "QEMU/nvhv", ">= 10x"});
  auto cmp = [&](const std::string& what, const Result& r, const std::string& nk, const std::string& qk) {
    const double n = median(r.nvhv, nk), q = median(r.qemu, qk);
    const bool met = n > 0 && q / n >= kFactor;
    c.row({what, r.name, fixed(n, 0) + " us", fixed(q, 0) + " us", ratio_text(q, n), met_text(met)});
    out.push_back({{"target", what + " >= 10x faster than QEMU"}, {"configuration", r.key}, {"nvhv_p50_us", n}, {"qemu_p50_us", q}, {"met", met}});
  };
  for (auto& r : results) {
    cmp("durable checkpoint: total_us vs stop+migrate+fdatasync", r, "total_us", "qemu_durable_save_us");
    cmp("machine state: vcpu+devices vs stop+migrate", r, "vcpu_plus_devices_us", "qemu_stop_migrate_us");
    cmp("resume: exec -> first tick line", r, "exec_to_first_tick_us", "qemu_exec_to_first_tick_us");
  }
  c.print();
  return out;
}

int run() {
  const int cycles = runs_from_env(15);
  const int tick_ms = int_from_env("NVHV_BENCH_TICK_MS", 2);
  const int mem_mib = int_from_env("NVHV_BENCH_MEM_MIB", 4);
  const bool have_qemu = !qemu_bin().empty() && std::getenv("NVHV_BENCH_NO_QEMU") == nullptr;
  print_host_line("start");
  const std::string disk = disk_parent();
  const std::vector<Medium> media = {{"tmpfs /dev/shm", "/dev/shm"}, {filesystem_type(disk) + " " + disk, disk}};

  const double harness_us = setpriv_overhead_us(std::max(cycles, 15));
  std::vector<Result> results;
  for (int vcpus : {1, 2}) {
    for (const auto& m : media) {
      Result r;
      r.name = std::to_string(vcpus) + " vCPU, " + m.label;
      r.key = std::to_string(vcpus) + "cpu_" + (m.parent == "/dev/shm" ? "tmpfs" : "disk");
      ScratchDir dir(m.parent);
      CycleSetup s;
      s.vcpus = vcpus;
      s.cmdline = "tick_ms=" + std::to_string(tick_ms) + " mem_mib=" + std::to_string(mem_mib);
      s.dir = dir.path();
      s.cycles = cycles;
      r.nvhv = run_nvhv_cycles(s);
      if (have_qemu) r.qemu = run_qemu_cycles(s, r.firmware);
      add_net_of_harness(r.nvhv, "exec_to_first_tick_us", "exec_to_first_tick_net_us", harness_us);
      add_net_of_harness(r.nvhv, "exec_to_resumed_line_us", "exec_to_resumed_line_net_us", harness_us);
      add_net_of_harness(r.qemu, "qemu_exec_to_first_tick_us", "qemu_exec_to_first_tick_net_us", harness_us);
      results.push_back(std::move(r));
    }
  }

  std::cout << "checkpoint_latency: power-fail checkpoint (SIGPWR / QMP stop+migrate) and resume of testos.elf, 256 MiB, \""
            << "tick_ms=" << tick_ms << " mem_mib=" << mem_mib << "\", " << cycles << " save/restore cycles per configuration\n";
  if (have_qemu) {
    std::cout << "QEMU 7.2: memory-backend-file share=on + x-ignore-shared, migrate exec:cat; firmware:";
    for (auto& r : results) std::cout << " " << r.key << "=" << r.firmware;
    std::cout << " (qboot has no MP table: 2 vCPUs need SeaBIOS)\n";
  } else {
    std::cout << "QEMU: not installed (or NVHV_BENCH_NO_QEMU set), no comparison\n";
  }
  std::cout << "harness: each VMM is started through setpriv --pdeathsig, which costs " << fixed(harness_us / 1e3, 3)
            << " ms of every exec figure (median, measured in this run); the \"net\" rows subtract it\n";
  print_figures(results, cycles, have_qemu);
  auto targets = print_targets(results, have_qemu);
  std::cout << "note: with " << cycles << " samples p99 is the largest; NVHV_BENCH_RUNS=100 gives a real p99\n";
  print_host_line("end");

  nlohmann::json figures = nlohmann::json::object();
  for (auto& r : results) {
    for (auto& [k, v] : r.nvhv) figures[r.key]["nvhv"][k] = to_json(stats(v));
    for (auto& [k, v] : r.qemu) figures[r.key]["qemu"][k] = to_json(stats(v));
    // NVHV_BENCH_RAW=1: every sample in cycle order too, to correlate figures of one cycle.
    if (std::getenv("NVHV_BENCH_RAW")) {
      for (auto& [k, v] : r.nvhv) figures[r.key]["nvhv_samples"][k] = v;
      for (auto& [k, v] : r.qemu) figures[r.key]["qemu_samples"][k] = v;
    }
    if (have_qemu) figures[r.key]["qemu_firmware"] = r.firmware;
  }
  print_json({{"bench", "checkpoint_latency"}, {"unit", "us"}, {"cycles", cycles},
              {"guest", {{"mem_mib", 256}, {"tick_ms", tick_ms}, {"workload_mib", mem_mib}}}, {"disk", disk},
              {"setpriv_overhead_us", harness_us}, {"figures", figures}, {"targets", targets}, {"load_average_end", load_average()}});
  return 0;
}

}  // namespace
}  // namespace nvhv::bench

int main() {
  try {
    return nvhv::bench::run();
  } catch (const std::exception& e) {
    std::cerr << "checkpoint_latency: " << e.what() << "\n";
    return 1;
  }
}
