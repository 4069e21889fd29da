#pragma once
// What `nvhv run` tells the outside world about its VM: the host registry entry (with
// --register, docs/fleet.md) and systemd's notification socket (READY=1 once the vCPUs run,
// STOPPING=1 when a power-fail checkpoint starts, STATUS= lines; docs/systemd.md).
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "vmm/config.hpp"
#include "vmm/fleet/registry.hpp"
#include "vmm/fleet/systemd_notify.hpp"

namespace CLI {
class App;
}

namespace nvhv {
class Machine;
}

namespace nvhv::fleet {

class RunReporting {
 public:
  // Adds --register and --state-dir to the `run` subcommand.
  explicit RunReporting(CLI::App& run);

  // Once the config is loaded. With --register: creates or updates the VM's entry as
  // "starting" with this pid, unless another live process owns it (then the entry is left
  // alone). Throws RegistryError when the registry cannot be written.
  void starting(const std::filesystem::path& config_path, const GuestConfig& config);
  // For MachineOptions::lifecycle; never blocks on the power-fail path.
  std::function<void(const std::string& state, const std::string& reason)> lifecycle();
  // After Machine::run(): records how the run ended; returns `status`.
  int finished(int status, const Machine& machine);
  // The run ended before its machine ran (refused image, failed swap-in, ...): returns `status`.
  int failed(int status, const std::string& why);

 private:
  void on_running(const std::string& how);
  void on_state(const std::string& state, const std::string& reason);
  // Updates this run's entry if it still owns it (an `nvhv unregister` meanwhile wins).
  void update_own_entry(const std::function<void(Entry&)>& change);
  void notify(const std::string& message) const;

  bool register_ = false;
  std::string state_dir_flag_;
  SystemdNotifier notifier_;
  std::optional<Registry> registry_;
  bool owns_entry_ = false;
  std::string name_;
  std::optional<std::filesystem::path> backing_;

  std::mutex mu_;  // guards what the lifecycle (any thread) records for finished()
  bool announced_running_ = false;
  std::optional<std::filesystem::path> swapping_out_to_;
  std::string stop_reason_;
};

}  // namespace nvhv::fleet
