// nvhv: a KVM virtual machine monitor whose guests survive power loss.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <csignal>
#include <iostream>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/machine.hpp"
#include "vmm/swap_commands.hpp"

namespace {

constexpr int kExitUsage = 2;

nvhv::log::Level parse_level(const std::string& s) {
  if (s == "error") return nvhv::log::Level::error;
  if (s == "warn") return nvhv::log::Level::warn;
  if (s == "debug") return nvhv::log::Level::debug;
  return nvhv::log::Level::info;
}

// Signals the event loop handles must not kill a thread that happens to receive them first.
void block_event_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGPWR, SIGHUP}) sigaddset(&set, s);
  // Asio's signal_set installs real handlers; leaving the signals unblocked everywhere is fine,
  // but SIGPIPE from a vanished serial reader must never kill the VMM.
  std::signal(SIGPIPE, SIG_IGN);
  (void)set;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvhv: a KVM virtual machine monitor whose guests survive power loss", "nvhv"};
  app.set_version_flag("--version", std::string(NVHV_VERSION));
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "error, warn, info or debug")->check(CLI::IsMember({"error", "warn", "info", "debug"}));

  auto* run = app.add_subcommand("run", "Run (or resume) the VM described by a guest.json");
  std::string config_path;
  bool cold = false;
  run->add_option("config", config_path, "guest.json (schema v1, see docs/config.md)")->required();
  run->add_flag("--cold", cold, "Boot fresh even when a checkpoint could be resumed");
  std::string swap_in_file;
  bool force_swap_in = false;
  nvhv::SwapCommandOptions swap_options;
  run->add_option("--swap-in", swap_in_file, "Restore the VM from this swap file into memory.backing, then resume it");
  run->add_flag("--force-swap-in", force_swap_in, "Override the refusals that protect a VM's only copy (recovery by hand)");

  auto* swap_out = app.add_subcommand("swap-out", "Swap a stopped VM with a committed checkpoint out to a file, freeing its image");
  std::string swap_config_path, swap_to;
  swap_out->add_option("config", swap_config_path, "guest.json of the VM")->required();
  swap_out->add_option("--to", swap_to, "Swap file to write (written to FILE.partial, then renamed)")->required();
  swap_out->add_option("--level", swap_options.level, "zstd compression level (default 1: fast)")->check(CLI::Range(-7, 19));
  swap_out->add_option("--threads", swap_options.threads, "Compression threads (default: one per CPU)");
  swap_out->add_flag("--force", swap_options.force, "Overwrite a swap file that still holds a VM (recovery by hand)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  nvhv::log::set_level(parse_level(log_level));
  block_event_signals();

  try {
    if (swap_out->parsed()) {
      // Offline: no KVM needed, only the image and the swap file.
      auto config = nvhv::load_config(swap_config_path, 254);
      return nvhv::swap_out_offline(config, swap_to, swap_options);
    }
    nvhv::KvmSystem probe;
    auto config = nvhv::load_config(config_path, static_cast<uint32_t>(std::min(probe.max_vcpus(), 254)));
    if (!swap_in_file.empty()) {
      nvhv::SwapCommandOptions in_options;
      in_options.force = force_swap_in;
      if (int rc = nvhv::swap_in(config, swap_in_file, in_options)) return rc;
    } else if (auto notice = nvhv::swap_run_notice(config)) {
      nvhv::log::error("{}", *notice);
      return 1;
    }
    nvhv::MachineOptions machine_options{cold};
    if (!swap_in_file.empty()) machine_options.swapped_in_from = swap_in_file;
    nvhv::Machine machine(std::move(config), machine_options);
    return machine.run();
  } catch (const nvhv::ConfigError& e) {
    nvhv::log::error("{}", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    nvhv::log::error("{}", e.what());
    return 1;
  }
}
