// memory_overhead: what a VMM costs in memory beyond the guest RAM it has touched. 256 MiB guest,
// 1 vCPU, testos with its default 16 MiB workload, sampled once the guest printed tick 3:
//   overhead = RSS (smaps_rollup) - resident pages of the guest RAM range (pagemap).
// RSS counts shared library pages in full; PSS (the same with shared pages divided among their
// users) is printed beside it. nvhv and QEMU (qboot) run the same guest with anonymous RAM and with
// RAM in a file on /dev/shm; the runs interleave.
//
// Target: nvhv overhead (RSS) <= 5 MiB. Exit status 1 only when a VMM fails to run the guest.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>

#include "persistence/image_layout.hpp"
#include "tests/bench/bench_guests.hpp"
#include "tests/bench/bench_process.hpp"
#include "tests/bench/bench_report.hpp"
#include "tests/bench/proc_stats.hpp"

namespace nvhv::bench {
namespace {

using namespace std::chrono_literals;

constexpr int kMemMib = 256;
constexpr uint64_t kGuestBytes = uint64_t{kMemMib} << 20;
constexpr double kTargetMib = 5.0;
const char* kCmdline = "tick_ms=20";

struct Sample {
  double rss_mib, pss_mib, guest_mib, overhead_rss_mib, overhead_pss_mib;
  std::vector<Contributor> top;
};

struct Config {
  std::string label;
  bool qemu;
  bool file;
  std::vector<double> rss, guest, over_rss, over_pss;
  std::vector<Contributor> top;  // from the first run
};

// Where guest RAM starts in nvhv's image: the header says (docs/image-format.md).
uint64_t nvhv_ram_offset(const std::string& image) {
  persistence::layout::ImageHeader h{};
  std::ifstream f(image, std::ios::binary);
  f.read(reinterpret_cast<char*>(&h), sizeof h);
  if (!f || h.ram_size != kGuestBytes) throw std::runtime_error(image + ": not an nvhv image of the expected size");
  return h.ram_offset;
}

std::optional<Sample> measure(Config& c, const std::string& dir) {
  const std::string ram_file = dir + "/ram-" + (c.qemu ? "qemu" : "nvhv") + ".img";
  std::vector<std::string> argv;
  if (c.qemu) {
    QemuGuest g;
    g.cmdline = kCmdline;
    if (c.file) g.ram_file = ram_file;
    argv = qemu_argv(g);
  } else {
    argv = {nvhv_bin(), "run", write_nvhv_config(dir, "mem", 1, kMemMib, kCmdline, c.file ? ram_file : "")};
  }
  std::optional<Sample> out;
  {
    Process p(argv);
    if (!p.wait_stdout(std::regex("testos: tick 3 ok"), 60s)) {
      std::cerr << "memory_overhead: " << c.label << " never printed tick 3\n" << p.describe();
      return std::nullopt;
    }
    const auto maps = mappings(p.pid());
    const auto totals = memory_totals(p.pid());
    uint64_t offset = c.file && !c.qemu ? nvhv_ram_offset(ram_file) : 0;
    auto range = find_guest_ram(maps, c.file ? ram_file : "", offset, kGuestBytes);
    if (!range) {
      std::cerr << "memory_overhead: " << c.label << ": no mapping of the guest RAM found\n";
      return std::nullopt;
    }
    const uint64_t guest = resident_bytes(p.pid(), *range);
    constexpr double kMiB = 1024.0 * 1024.0;
    out = Sample{static_cast<double>(totals.rss_kib) / 1024.0, static_cast<double>(totals.pss_kib) / 1024.0,
                 static_cast<double>(guest) / kMiB, (static_cast<double>(totals.rss_kib) * 1024.0 - static_cast<double>(guest)) / kMiB,
                 (static_cast<double>(totals.pss_kib) * 1024.0 - static_cast<double>(guest)) / kMiB, rss_by_object(maps, *range, guest)};
    p.signal(SIGTERM);
    if (!p.wait_exit(20s)) std::cerr << "memory_overhead: " << c.label << " did not stop on SIGTERM; killed\n";
  }
  ::unlink(ram_file.c_str());
  return out;
}

int run() {
  const int runs = runs_from_env(15);
  print_host_line("start");
  const bool have_qemu = !qemu_bin().empty() && std::getenv("NVHV_BENCH_NO_QEMU") == nullptr;
  std::vector<Config> configs = {{"nvhv, anonymous RAM", false, false, {}, {}, {}, {}, {}},
                                 {"nvhv, RAM file on /dev/shm", false, true, {}, {}, {}, {}, {}}};
  if (have_qemu) {
    configs.push_back({"QEMU 7.2 (qboot), anonymous RAM", true, false, {}, {}, {}, {}, {}});
    configs.push_back({"QEMU 7.2 (qboot), RAM file on /dev/shm", true, true, {}, {}, {}, {}, {}});
  }
  ScratchDir dir("/dev/shm");
  for (int i = 0; i < runs; ++i) {
    for (auto& c : configs) {
      auto s = measure(c, dir.path());
      if (!s) return 1;
      c.rss.push_back(s->rss_mib);
      c.guest.push_back(s->guest_mib);
      c.over_rss.push_back(s->overhead_rss_mib);
      c.over_pss.push_back(s->overhead_pss_mib);
      if (i == 0) c.top = s->top;
    }
  }

  std::cout << "memory_overhead: RSS - resident guest RAM pages; testos.elf, 256 MiB, 1 vCPU, \"" << kCmdline
            << "\" (16 MiB workload), sampled at \"tick 3 ok\"; " << runs << " runs each, medians\n";
  Table t({"VMM, guest RAM", "RSS MiB", "guest resident MiB", "overhead RSS MiB", "p90", "overhead PSS MiB"});
  for (auto& c : configs)
    t.row({c.label, fixed(stats(c.rss).median), fixed(stats(c.guest).median), fixed(stats(c.over_rss).median),
           fixed(stats(c.over_rss).p90), fixed(stats(c.over_pss).median)});
  t.print();
  nlohmann::json results = nlohmann::json::object();
  std::map<std::string, double> median;
  for (auto& c : configs) {
    const std::string key = std::string(c.qemu ? "qemu" : "nvhv") + (c.file ? "_shm_file" : "_anonymous");
    median[key] = stats(c.over_rss).median;
    results[key] = {{"rss_mib", to_json(stats(c.rss))}, {"guest_resident_mib", to_json(stats(c.guest))},
                    {"overhead_rss_mib", to_json(stats(c.over_rss))}, {"overhead_pss_mib", to_json(stats(c.over_pss))}};
  }
  if (have_qemu)
    std::cout << "QEMU/nvhv overhead (RSS): anonymous " << ratio_text(median["qemu_anonymous"], median["nvhv_anonymous"])
              << ", file " << ratio_text(median["qemu_shm_file"], median["nvhv_shm_file"]) << "\n";
  const bool met_anon = median["nvhv_anonymous"] <= kTargetMib, met_file = median["nvhv_shm_file"] <= kTargetMib;
  std::cout << "target: nvhv overhead (RSS) <= " << fixed(kTargetMib, 0) << " MiB: anonymous " << fixed(median["nvhv_anonymous"])
            << " MiB " << met_text(met_anon) << ", file " << fixed(median["nvhv_shm_file"]) << " MiB " << met_text(met_file) << "\n";
  for (auto& c : configs) {
    std::cout << "largest RSS outside guest RAM, " << c.label << " (run 1), KiB:";
    for (size_t i = 0; i < c.top.size() && i < 6; ++i) std::cout << " " << c.top[i].name << "=" << fixed(c.top[i].rss_kib, 0);
    std::cout << "\n";
  }
  print_host_line("end");
  print_json({{"bench", "memory_overhead"}, {"unit", "MiB"}, {"runs", runs}, {"guest", {{"mem_mib", kMemMib}, {"vcpus", 1}, {"cmdline", kCmdline}}},
              {"results", results}, {"load_average_end", load_average()},
              {"target", {{"nvhv_overhead_rss_mib_max", kTargetMib}, {"met_anonymous", met_anon}, {"met_shm_file", met_file}}}});
  return 0;
}

}  // namespace
}  // namespace nvhv::bench

int main() {
  try {
    return nvhv::bench::run();
  } catch (const std::exception& e) {
    std::cerr << "memory_overhead: " << e.what() << "\n";
    return 1;
  }
}
