// nvhv: a KVM virtual machine monitor whose guests survive power loss.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <csignal>
#include <iostream>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/fleet/registry_commands.hpp"
#include "vmm/fleet/run_reporting.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/libvirt_import.hpp"
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
  // A power-fail notice (systemd's KillSignal, nvhvctl fleet power-fail) must never kill nvhv by
  // its default action, least of all after a resume consumed the checkpoint: it stays pending
  // until Machine::run() unblocks it with its handler in place, and then checkpoints.
  sigset_t power_fail;
  sigemptyset(&power_fail);
  sigaddset(&power_fail, SIGPWR);
  pthread_sigmask(SIG_BLOCK, &power_fail, nullptr);
  // Asio's signal_set installs real handlers for the others; SIGPIPE from a vanished serial
  // reader must never kill the VMM.
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace

int main(int argc, char** argv) {
  block_event_signals();  // first: from here on a power-fail notice can no longer kill nvhv
  const std::vector<std::string> original_argv(argv, argv + argc);  // for a reboot (on_reset)
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
  nvhv::fleet::RunReporting reporting(*run);  // --register, --state-dir; systemd notifications
  nvhv::fleet::RegistryCommands registry_commands(app);  // register, unregister, inspect

  auto* swap_out = app.add_subcommand("swap-out", "Swap a stopped VM with a committed checkpoint out to a file, freeing its image");
  std::string swap_config_path, swap_to;
  swap_out->add_option("config", swap_config_path, "guest.json of the VM")->required();
  swap_out->add_option("--to", swap_to, "Swap file to write (written to FILE.partial, then renamed)")->required();
  swap_out->add_option("--level", swap_options.level, "zstd compression level (default 1: fast)")->check(CLI::Range(-7, 19));
  swap_out->add_option("--threads", swap_options.threads, "Compression threads (default: one per CPU)");
  swap_out->add_flag("--force", swap_options.force, "Overwrite a swap file that still holds a VM (recovery by hand)");

  auto* swap_in_cmd = app.add_subcommand("swap-in", "Restore a swapped-out VM into its memory.backing as a resumable image, without running it");
  std::string swap_in_config_path, swap_from;
  nvhv::SwapCommandOptions swap_in_options;
  swap_in_cmd->add_option("config", swap_in_config_path, "guest.json of the VM")->required();
  swap_in_cmd->add_option("--from", swap_from, "Swap file written by swap-out or vm.swap_out")->required();
  swap_in_cmd->add_flag("--force", swap_in_options.force, "Override the refusals that protect a VM's only copy (recovery by hand)");

  auto* import_libvirt = app.add_subcommand("import-libvirt", "Print the guest.json for a libvirt domain XML (docs/import-libvirt.md)");
  std::string domain_xml;
  import_libvirt->add_option("domain", domain_xml, "libvirt domain XML file, or - for standard input")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  nvhv::log::set_level(parse_level(log_level));

  try {
    if (auto rc = registry_commands.run()) return *rc;
    if (import_libvirt->parsed()) {
      // The whole document first: nothing reaches stdout unless the import succeeded.
      std::string guest_json = nvhv::import_libvirt_file(domain_xml).dump(2) + "\n";
      std::cout << guest_json << std::flush;
      return std::cout ? 0 : 1;
    }
    if (swap_out->parsed()) {
      // Offline: no KVM needed, only the image and the swap file.
      auto config = nvhv::load_config(swap_config_path, 254);
      return nvhv::swap_out_offline(config, swap_to, swap_options);
    }
    if (swap_in_cmd->parsed()) {
      // Offline too: the next `nvhv run guest.json` resumes what this restored.
      auto config = nvhv::load_config(swap_in_config_path, 254);
      return nvhv::swap_in(config, swap_from, swap_in_options);
    }
    nvhv::KvmSystem probe;
    auto config = nvhv::load_config(config_path, static_cast<uint32_t>(std::min(probe.max_vcpus(), 254)));
    reporting.starting(config_path, config);
    if (!swap_in_file.empty()) {
      nvhv::SwapCommandOptions in_options;
      in_options.force = force_swap_in;
      if (int rc = nvhv::swap_in(config, swap_in_file, in_options))
        return reporting.failed(rc, "swap-in from " + swap_in_file + " failed (its log says why)");
    } else if (auto notice = nvhv::swap_run_notice(config)) {
      nvhv::log::error("{}", *notice);
      return reporting.failed(1, *notice);
    }
    nvhv::MachineOptions machine_options{cold};
    if (!swap_in_file.empty()) machine_options.swapped_in_from = swap_in_file;
    machine_options.lifecycle = reporting.lifecycle();
    {
      nvhv::Machine machine(std::move(config), machine_options);
      const int status = machine.run();
      // A run that failed on its way out (the final write-back) ends here rather than reboot
      // over a persistent region that may not be durable.
      if (!machine.reboot_requested() || status != 0) return reporting.finished(status, machine);
    }
    // The machine is gone (its KVM VM, files and socket closed) before the new image starts.
    return reporting.failed(nvhv::reboot_by_exec(original_argv), "guest reset: the reboot failed (see the log)");
  } catch (const nvhv::ConfigError& e) {
    nvhv::log::error("{}", e.what());
    return reporting.failed(kExitUsage, e.what());
  } catch (const std::exception& e) {
    nvhv::log::error("{}", e.what());
    return reporting.failed(1, e.what());
  }
}
