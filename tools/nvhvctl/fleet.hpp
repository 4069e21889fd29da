#pragma once
// `nvhvctl fleet`: every VM of the host registry at once (docs/fleet.md).
//   nvhvctl fleet list        [--state-dir DIR] [--json]
//   nvhvctl fleet power-fail  [--state-dir DIR] [--deadline-ms N] [--timeout-ms N] [--json]
//   nvhvctl fleet resume      [--state-dir DIR] [--timeout-ms N] [--nvhv PATH] [--json]
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace nvhvctl {

// Exit statuses of the fleet commands.
enum FleetExit { kFleetOk = 0, kFleetFailed = 1, kFleetUsage = 2 };

struct FleetOptions {
  std::filesystem::path state_dir;
  bool json = false;
  std::optional<int> deadline_ms;  // power-fail: reported against, per VM
  int timeout_ms = 60000;          // how long one VM may take before it counts as failed
  std::string nvhv_binary;         // resume: the nvhv to start
};

// argv[0] is "fleet".
int fleet_main(int argc, char** argv);

int fleet_list(const FleetOptions& o);
int fleet_power_fail(const FleetOptions& o);
int fleet_resume(const FleetOptions& o);

// Output shared by the subcommands.
void print_out(const std::string& line);
void print_err(const std::string& line);
void print_json(const nlohmann::json& doc);
double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b);

}  // namespace nvhvctl
