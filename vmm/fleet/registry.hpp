#pragma once
// The host registry (docs/fleet.md): one JSON file per VM under STATE_DIR/vms/, naming its
// config, API socket and last known status, so `nvhvctl fleet` can power-fail and resume every
// VM of the host. Files are replaced atomically (temp file, fsync, rename, fsync of the
// directory): a power cut leaves either the old or the new entry, never a torn one.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv::fleet {

inline constexpr const char* kDefaultStateDir = "/var/lib/nvhv";
inline constexpr const char* kStateDirEnv = "NVHV_STATE_DIR";

// --state-dir when given, else $NVHV_STATE_DIR when set and non-empty, else /var/lib/nvhv;
// made absolute so that VMs started from it find it whatever their working directory.
std::filesystem::path resolve_state_dir(const std::string& flag_value);

// A registry entry or the state directory cannot be read or written; what() names the file.
class RegistryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class VmStatus {
  registered,    // known, never run with --register since
  starting,      // nvhv run --register is setting up (loading, swapping in, resuming)
  running,       // the vCPUs run
  checkpointed,  // exited after committing a power-fail checkpoint: resumable
  stopped,       // exited without a checkpoint (guest power-off, SIGTERM, vm.shutdown)
  failed,        // exited with an error, or could not start
  swapped_out,   // exited after vm.swap_out: the VM lives in swap_file
};
const char* to_string(VmStatus s);
std::optional<VmStatus> parse_status(const std::string& text);

// The start time of a process (/proc/PID/stat field 22, clock ticks since boot), so that a pid
// reused by another process is never taken for the VM's.
std::optional<uint64_t> process_start_ticks(pid_t pid);

struct Entry {
  std::string name;  // the config's name; also the file name
  std::filesystem::path config;
  std::optional<std::filesystem::path> api_socket;
  std::optional<std::filesystem::path> backing;  // memory.backing: absent for a VM without persistence
  bool autostart = false;  // fleet resume boots it even without a checkpoint
  VmStatus status = VmStatus::registered;
  pid_t pid = 0;  // of the nvhv process while starting/running; 0 otherwise
  uint64_t pid_start_ticks = 0;
  std::string detail;  // why the status is what it is, for the operator
  std::optional<int> exit_status;
  std::optional<uint64_t> resumed_generation;   // the checkpoint the current/last run resumed
  std::optional<nlohmann::json> last_checkpoint;  // figures of the last committed checkpoint
  std::optional<std::filesystem::path> swap_file;  // where a swapped-out VM lives
  std::string updated_at;  // UTC, ISO 8601

  // starting/running and its process still exists (same pid, same start time).
  bool process_alive() const;
  // The status with stale claims resolved: "dead" for a starting/running entry whose process
  // is gone (it crashed or the host lost power), else to_string(status).
  std::string effective_status() const;

  nlohmann::json to_json() const;
  // Throws RegistryError naming `where` and the field when the document is not an entry this
  // version understands.
  static Entry from_json(const nlohmann::json& doc, const std::string& where);
};

// 1-64 characters of A-Za-z0-9-_. (the config's rule for `name`).
bool valid_vm_name(const std::string& name);

class Registry {
 public:
  explicit Registry(std::filesystem::path state_dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path entry_path(const std::string& name) const;
  // Output of a VM that fleet resume started (appended).
  std::filesystem::path log_path(const std::string& name) const;

  struct Listing {
    std::vector<Entry> entries;       // sorted by name
    std::vector<std::string> errors;  // one per unreadable entry file, naming it
  };
  // Every entry; a missing state directory is an empty registry.
  Listing list() const;
  // nullopt when there is no entry; throws RegistryError when the file cannot be read.
  std::optional<Entry> find(const std::string& name) const;

  // Read-modify-write of one entry under the registry's lock: `change` sees the current entry
  // (nullopt if none, or if the file is unreadable and `replace_unreadable`) and returns what to
  // store, or nullopt to leave the file as it is. Creates the state directory when needed.
  // Returns what was stored.
  std::optional<Entry> update(const std::string& name,
                              const std::function<std::optional<Entry>(const std::optional<Entry>&)>& change,
                              bool replace_unreadable = false);
  // Removes the entry; false when there was none.
  bool remove(const std::string& name);

 private:
  void ensure_dirs() const;
  void write_atomically(const Entry& entry) const;

  std::filesystem::path dir_;
};

// Now, as the registry stores it.
std::string utc_now_iso8601();

}  // namespace nvhv::fleet
