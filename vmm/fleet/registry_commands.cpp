#include "vmm/fleet/registry_commands.hpp"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cstdio>
#include <filesystem>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/config.hpp"
#include "vmm/fleet/image_check.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhv::fleet {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// Registering and inspecting need no KVM; the config's vCPU limit is then the schema's own.
constexpr uint32_t kSchemaMaxVcpus = 254;

void print(const std::string& line) { std::fputs((line + "\n").c_str(), stdout); }

}  // namespace

RegistryCommands::RegistryCommands(CLI::App& app) {
  const char* state_dir_help = "Registry state directory (default: $NVHV_STATE_DIR, else /var/lib/nvhv)";
  register_ = app.add_subcommand("register", "Add the VM of a guest.json to the host registry, or update its entry");
  register_->add_option("config", config_path_, "guest.json of the VM")->required();
  register_->add_flag("--autostart", autostart_, "fleet resume boots it even when it has no checkpoint to resume");
  register_->add_option("--swap-file", swap_file_, "The swap file the VM was swapped out to (fleet resume swaps it in)");
  register_->add_option("--state-dir", state_dir_flag_, state_dir_help);

  unregister_ = app.add_subcommand("unregister", "Remove a VM from the host registry (its files are left alone)");
  unregister_->add_option("name", name_, "the VM's name")->required();
  unregister_->add_flag("--force", force_, "Remove the entry even while the VM runs");
  unregister_->add_option("--state-dir", state_dir_flag_, state_dir_help);

  inspect_ = app.add_subcommand("inspect", "Tell what `nvhv run` would do with the VM's image, changing nothing");
  inspect_->add_option("config", config_path_, "guest.json of the VM")->required();
  inspect_->add_flag("--json", json_, "Print one JSON object");
}

std::optional<int> RegistryCommands::run() const {
  try {
    if (register_->parsed()) return do_register();
    if (unregister_->parsed()) return do_unregister();
    if (inspect_->parsed()) return do_inspect();
  } catch (const ConfigError& e) {
    log::error("{}", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return kExitFailed;
  }
  return std::nullopt;
}

int RegistryCommands::do_register() const {
  const GuestConfig config = load_config(config_path_, kSchemaMaxVcpus);
  const auto config_abs = std::filesystem::absolute(config_path_).lexically_normal();
  Registry registry(resolve_state_dir(state_dir_flag_));
  registry.update(
      config.name,
      [&](const std::optional<Entry>& current) -> std::optional<Entry> {
        if (current && current->config != config_abs && current->process_alive())
          throw RegistryError(fmt::format("{} is registered with config {} and runs as pid {}: stop it or unregister it "
                                          "before registering {} under the same name",
                                          config.name, current->config.string(), current->pid, config_abs.string()));
        Entry e = current.value_or(Entry{});
        if (!current) e.detail = "registered";
        e.config = config_abs;
        e.api_socket = config.api_socket;
        e.backing = config.memory.backing;
        e.autostart = autostart_;
        if (!swap_file_.empty()) e.swap_file = std::filesystem::absolute(swap_file_).lexically_normal();
        return e;
      },
      /*replace_unreadable=*/true);
  print(fmt::format("registered {} in {}", config.name, registry.entry_path(config.name).string()));
  return 0;
}

int RegistryCommands::do_unregister() const {
  if (!valid_vm_name(name_)) throw ConfigError(fmt::format("'{}' is not a VM name (1-64 characters of letters, digits, '-', '_' or '.')", name_));
  Registry registry(resolve_state_dir(state_dir_flag_));
  std::optional<Entry> entry;
  try {
    entry = registry.find(name_);
  } catch (const RegistryError& e) {
    // An unreadable entry can still be removed: that is how an operator clears it.
    log::warn("{}", e.what());
    registry.remove(name_);
    print(fmt::format("unregistered {} (its entry was unreadable)", name_));
    return 0;
  }
  if (!entry) throw RegistryError(fmt::format("no VM named {} is registered in {}", name_, registry.dir().string()));
  if (entry->process_alive() && !force_)
    throw RegistryError(fmt::format("{} is {} as pid {}: stop it first, or pass --force (fleet commands then no longer "
                                    "see it)",
                                    name_, to_string(entry->status), entry->pid));
  registry.remove(name_);
  print(fmt::format("unregistered {}", name_));
  return 0;
}

int RegistryCommands::do_inspect() const {
  const GuestConfig config = load_config(config_path_, kSchemaMaxVcpus);
  // Opening the image logs what it found at info level; the answer printed below says it all.
  if (log::level() == log::Level::info) log::set_level(log::Level::warn);
  const ImageCheck check = check_image(config);
  if (json_) {
    nlohmann::json out{{"name", config.name},
                       {"config", std::filesystem::absolute(config_path_).lexically_normal().string()},
                       {"image", check.to_json()}};
    print(out.dump(2));
  } else {
    print(fmt::format("{}: {}: {}", config.name, to_string(check.state), check.detail));
  }
  return 0;
}

}  // namespace nvhv::fleet
