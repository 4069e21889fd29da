#include "vmm/fleet/run_reporting.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "persistence/swap_image.hpp"
#include "vmm/base/log.hpp"
#include "vmm/machine.hpp"

namespace nvhv::fleet {
namespace {

nlohmann::json figures_json(const CheckpointFigures& f) {
  return {{"generation", f.generation}, {"vcpu_us", f.vcpu_us},   {"devices_us", f.devices_us},
          {"flush_us", f.flush_us},     {"commit_us", f.commit_us}, {"total_us", f.total_us},
          {"flushed_bytes", f.flushed_bytes}};
}

}  // namespace

RunReporting::RunReporting(CLI::App& run) {
  auto* reg = run.add_flag("--register", register_,
                           "Record the VM and its status in the host registry (docs/fleet.md) for `nvhvctl fleet`");
  run.add_option("--state-dir", state_dir_flag_,
                 "Registry state directory (default: $NVHV_STATE_DIR, else /var/lib/nvhv)")
      ->needs(reg);
}

void RunReporting::starting(const std::filesystem::path& config_path, const GuestConfig& config) {
  notifier_ = SystemdNotifier::from_environment();
  name_ = config.name;
  backing_ = config.memory.backing;
  notify(fmt::format("STATUS={}: starting", name_));
  if (!register_) return;
  registry_.emplace(resolve_state_dir(state_dir_flag_));
  const pid_t self = ::getpid();
  const auto config_abs = std::filesystem::absolute(config_path).lexically_normal();
  auto stored = registry_->update(
      name_,
      [&](const std::optional<Entry>& current) -> std::optional<Entry> {
        if (current && current->process_alive() && current->pid != self) {
          log::warn("registry: {} is registered as {} in pid {}; this run leaves its entry alone", name_,
                    to_string(current->status), current->pid);
          return std::nullopt;
        }
        Entry e = current.value_or(Entry{});
        e.config = config_abs;
        e.api_socket = config.api_socket;
        e.backing = config.memory.backing;
        e.status = VmStatus::starting;
        e.pid = self;
        e.pid_start_ticks = process_start_ticks(self).value_or(0);
        e.detail = "starting";
        e.exit_status.reset();
        e.resumed_generation.reset();
        return e;
      },
      /*replace_unreadable=*/true);
  owns_entry_ = stored.has_value();
  if (owns_entry_) log::info("registry: {} registered in {}", name_, registry_->entry_path(name_).string());
}

std::function<void(const std::string&, const std::string&)> RunReporting::lifecycle() {
  return [this](const std::string& state, const std::string& reason) { on_state(state, reason); };
}

void RunReporting::on_state(const std::string& state, const std::string& reason) {
  if (state == "running") {
    bool first = false;
    {
      std::lock_guard lock(mu_);
      first = !std::exchange(announced_running_, true);
    }
    if (first) {
      on_running(reason);
      return;
    }
    notify(fmt::format("STATUS={}: running", name_));
  } else if (state == "checkpointing") {
    notify(fmt::format("STOPPING=1\nSTATUS={}: power-fail checkpoint in progress", name_));
  } else if (state == "swapping-out") {
    {
      std::lock_guard lock(mu_);
      swapping_out_to_ = std::filesystem::absolute(reason).lexically_normal();
    }
    notify(fmt::format("STATUS={}: swapping out to {}", name_, reason));
  } else if (state == "stopped") {
    std::lock_guard lock(mu_);
    stop_reason_ = reason;
  } else {
    notify(fmt::format("STATUS={}: {} ({})", name_, state, reason));
  }
}

void RunReporting::on_running(const std::string& how) {
  // Called on the main thread right after the vCPUs start: the registry write (an fsync) waits
  // for nothing the guest needs.
  update_own_entry([&](Entry& e) {
    e.status = VmStatus::running;
    e.detail = how;
    e.swap_file.reset();  // a swap-in has consumed it: the image holds the VM now
    if (how.rfind("resumed gen=", 0) == 0) e.resumed_generation = std::stoull(how.substr(12));
  });
  notify(fmt::format("READY=1\nSTATUS={}: running ({})", name_, how));
}

int RunReporting::finished(int status, const Machine& machine) {
  std::optional<std::filesystem::path> swap_file;
  std::string reason;
  {
    std::lock_guard lock(mu_);
    swap_file = swapping_out_to_;
    reason = stop_reason_;
  }
  const auto checkpoint = machine.last_checkpoint();
  // vm.swap_out can fail after its checkpoint committed: the image then still holds the VM.
  const bool swapped_out = swap_file && backing_ && persistence::finished_swap_out(*backing_, *swap_file);
  VmStatus final_status = VmStatus::failed;
  std::string detail = reason;
  if (swapped_out) {
    final_status = VmStatus::swapped_out;
    detail = fmt::format("swapped out to {}", swap_file->string());
  } else if (checkpoint) {
    final_status = VmStatus::checkpointed;
    detail = fmt::format("power-fail checkpoint gen={} committed in {} us", checkpoint->generation, checkpoint->total_us);
  } else if (status == 0) {
    final_status = VmStatus::stopped;
  }
  update_own_entry([&](Entry& e) {
    e.status = final_status;
    e.detail = detail;
    e.exit_status = status;
    e.pid = 0;
    e.pid_start_ticks = 0;
    if (checkpoint) e.last_checkpoint = figures_json(*checkpoint);
    if (swapped_out) e.swap_file = swap_file;
  });
  notify(fmt::format("STOPPING=1\nSTATUS={}: {}: {}", name_, to_string(final_status), detail));
  return status;
}

int RunReporting::failed(int status, const std::string& why) {
  update_own_entry([&](Entry& e) {
    e.status = VmStatus::failed;
    e.detail = why;
    e.exit_status = status;
    e.pid = 0;
    e.pid_start_ticks = 0;
  });
  notify(fmt::format("STATUS={}: failed: {}", name_, why));
  return status;
}

void RunReporting::update_own_entry(const std::function<void(Entry&)>& change) {
  if (!owns_entry_) return;
  const pid_t self = ::getpid();
  try {
    registry_->update(name_, [&](const std::optional<Entry>& current) -> std::optional<Entry> {
      if (!current || current->pid != self) return std::nullopt;
      Entry e = *current;
      change(e);
      return e;
    });
  } catch (const std::exception& e) {
    // The VM itself is fine; only its bookkeeping is behind.
    log::warn("registry: cannot update the entry of {}: {}", name_, e.what());
  }
}

void RunReporting::notify(const std::string& message) const { notifier_.notify(message); }

}  // namespace nvhv::fleet
