#pragma once
// Helpers for the host registry and `nvhvctl fleet` tests: testos VMs whose serial output goes to
// a file (VMs that fleet resume starts are detached, so a file is the one place all their runs
// write to), the fleet commands, and a guard that ends every VM a test left running.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/nvhv_support.hpp"

namespace nvhv::test {

using namespace std::chrono_literals;

inline std::string nvhvctl_bin() { return build_dir() + "/bin/nvhvctl"; }

// One persistent testos VM in `dir`: 1 vCPU, 40 MiB (testos's workload starts at 32 MiB),
// image, API socket and serial output in files named after it.
struct FleetVm {
  FleetVm(const TempDir& dir, const std::string& vm_name, bool with_api = true) : name(vm_name) {
    auto cfg = testos_config(name, 1, 40, "tick_ms=50 mem_mib=2");
    cfg["memory"]["backing"] = dir.file(name + ".img");
    serial = dir.file(name + ".serial");
    cfg["serial"] = {{"output", serial}};
    if (with_api) {
      socket = dir.file(name + ".sock");
      cfg["api"] = {{"socket", socket}};
    }
    config = write_config(dir, cfg, name + ".json");
  }

  std::vector<std::string> serial_lines() const {
    std::ifstream in(serial);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }
  long last_tick() const {
    auto s = summarize(serial_lines());
    return s.ticks.empty() ? 0 : s.ticks.back();
  }
  // Waits until the guest has printed a tick above `after`.
  bool wait_tick_above(long after, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (last_tick() > after) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // The serial contract across every run: one boot, no CORRUPT, ticks 1, 2, 3, ... in order.
  std::string check_serial() const {
    auto s = summarize(serial_lines());
    if (s.boots != 1) return name + ": " + std::to_string(s.boots) + " boot lines";
    if (s.corrupt) return name + ": CORRUPT";
    if (s.ticks.empty() || !consecutive(s.ticks, 1)) return name + ": ticks not consecutive from 1";
    return "";
  }

  std::string name;
  std::string config;
  std::string serial;
  std::string socket;
};

struct JsonRun {
  int status;
  nlohmann::json doc;  // null when stdout was not JSON
  std::string out;
  std::string err;
  std::string describe() const { return "status " + std::to_string(status) + "\nstdout:\n" + out + "\nstderr:\n" + err; }
};

inline JsonRun run_json(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 120s) {
  auto r = run_command(argv, timeout);
  return {r.status, nlohmann::json::parse(r.out, nullptr, false), r.out, r.err};
}

inline JsonRun fleet(const std::string& state_dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv{nvhvctl_bin(), "fleet"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--state-dir", state_dir, "--json"});
  return run_json(argv);
}

// The registry entry of `name` as `fleet list --json` shows it (null when absent).
inline nlohmann::json listed(const std::string& state_dir, const std::string& name) {
  auto r = fleet(state_dir, {"list"});
  if (!r.doc.is_object()) return nullptr;
  for (const auto& vm : r.doc["vms"])
    if (vm["name"] == name) return vm;
  return nullptr;
}

inline nlohmann::json vm_named(const nlohmann::json& report, const std::string& name) {
  for (const auto& vm : report["vms"])
    if (vm["name"] == name) return vm;
  return nullptr;
}

// Ends (SIGKILL, by pid) every VM process the registry in `state_dir` still names as running,
// when the test ends however it ends: fleet resume starts VMs detached from the test.
class FleetGuard {
 public:
  explicit FleetGuard(std::string state_dir) : state_dir_(std::move(state_dir)) {}
  ~FleetGuard() {
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(state_dir_ + "/vms", ec)) {
      if (f.path().extension() != ".json") continue;
      std::ifstream in(f.path());
      auto doc = nlohmann::json::parse(in, nullptr, false);
      if (!doc.is_object() || !doc["pid"].is_number_integer()) continue;
      const pid_t pid = doc["pid"].get<pid_t>();
      if (pid > 0 && pid != ::getpid() && same_start(pid, doc["pid_start_ticks"])) ::kill(pid, SIGKILL);
    }
  }

 private:
  static bool same_start(pid_t pid, const nlohmann::json& ticks) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line) || !ticks.is_number_unsigned()) return false;
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 22 && fields >> field; ++i)
      if (i == 22) return field == std::to_string(ticks.get<uint64_t>());
    return false;
  }
  std::string state_dir_;
};

}  // namespace nvhv::test
