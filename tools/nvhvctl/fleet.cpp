#include "tools/nvhvctl/fleet.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

#include "vmm/base/log.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhvctl {

void print_out(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

void print_err(const std::string& line) {
  std::fputs(("nvhvctl: fleet: " + line + "\n").c_str(), stderr);
  std::fflush(stderr);
}

void print_json(const nlohmann::json& doc) { print_out(doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)); }

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int fleet_main(int argc, char** argv) {
  CLI::App app{"Works on every VM of the host registry (docs/fleet.md).", "nvhvctl fleet"};
  app.require_subcommand(1);
  app.fallthrough();  // --state-dir and --json may follow the subcommand
  std::string state_dir_flag;
  FleetOptions o;
  app.add_option("--state-dir", state_dir_flag, "Registry state directory (default: $NVHV_STATE_DIR, else /var/lib/nvhv)");
  app.add_flag("--json", o.json, "Print one JSON document instead of text");

  auto* list = app.add_subcommand("list", "List the registered VMs with their config, API socket and status");
  auto* power_fail = app.add_subcommand("power-fail", "Send every running VM a power-fail notice at once; report each checkpoint");
  int deadline_ms = 0;
  power_fail->add_option("--deadline-ms", deadline_ms, "Report whether each VM committed within N ms of the notice")
      ->check(CLI::Range(1, 24 * 3600 * 1000));
  power_fail->add_option("--timeout-ms", o.timeout_ms, "Give up on a VM that has not committed and exited after N ms")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 3600 * 1000));
  auto* resume = app.add_subcommand("resume", "Start every registered VM that has a checkpoint (or autostart); wait until each runs");
  resume->add_option("--timeout-ms", o.timeout_ms, "Give up on a VM that is not running after N ms")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 3600 * 1000));
  resume->add_option("--nvhv", o.nvhv_binary, "The nvhv binary to start (default: the one beside nvhvctl, else $PATH)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kFleetOk : kFleetUsage;
  }
  if (deadline_ms > 0) o.deadline_ms = deadline_ms;
  o.state_dir = nvhv::fleet::resolve_state_dir(state_dir_flag);
  // Opening an image to inspect it logs at info level; the fleet report says what matters.
  nvhv::log::set_level(nvhv::log::Level::warn);
  try {
    if (list->parsed()) return fleet_list(o);
    if (power_fail->parsed()) return fleet_power_fail(o);
    if (resume->parsed()) return fleet_resume(o);
  } catch (const std::exception& e) {
    print_err(e.what());
    return kFleetFailed;
  }
  return kFleetUsage;
}

}  // namespace nvhvctl
