#pragma once
// The registry subcommands of nvhv (docs/fleet.md):
//   nvhv register guest.json [--autostart] [--swap-file FILE] [--state-dir DIR]
//   nvhv unregister NAME [--force] [--state-dir DIR]
//   nvhv inspect guest.json [--json]     what `nvhv run` would do with the VM's image
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace nvhv::fleet {

class RegistryCommands {
 public:
  explicit RegistryCommands(CLI::App& app);
  // The exit status when one of these subcommands was given, else nullopt: 0 done, 1 refused or
  // failed (the message names the entry or file), 2 a bad config.
  std::optional<int> run() const;

 private:
  int do_register() const;
  int do_unregister() const;
  int do_inspect() const;

  CLI::App* register_ = nullptr;
  CLI::App* unregister_ = nullptr;
  CLI::App* inspect_ = nullptr;
  std::string config_path_;
  std::string state_dir_flag_;
  std::string name_;
  std::string swap_file_;
  bool autostart_ = false;
  bool force_ = false;
  bool json_ = false;
};

}  // namespace nvhv::fleet
