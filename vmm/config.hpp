#pragma once
// guest.json, schema v1: parsed and fully validated before anything runs.
// Every error is a ConfigError whose message starts with the JSON pointer of the bad field.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv {

struct SerialConfig {
  bool to_stdout = true;
  std::filesystem::path file;  // when !to_stdout
};

struct MemoryConfig {
  uint64_t size_mib = 0;
  std::optional<std::filesystem::path> backing;  // absent: anonymous, not persistent
};

// A guest persistent-memory region: host file or DAX device shown to the guest as E820 type 12
// (Linux's nd_e820 makes it /dev/pmemN).
struct PmemConfig {
  std::filesystem::path path;
  uint64_t size_mib = 0;
};

// A virtio-blk disk: a raw image file.
struct DiskConfig {
  std::filesystem::path path;
  bool readonly = false;
};

// The virtio-console port (the guest agent's channel); its output is appended to `log`.
struct ConsoleConfig {
  std::optional<std::filesystem::path> log;
};

// What a guest reset (reset port, KVM_SYSTEM_EVENT_RESET, triple fault) does: end nvhv, or boot
// the VM afresh in the same process (main re-executes nvhv with --cold).
enum class OnReset { exit, reboot };

struct GuestConfig {
  std::string name;
  uint32_t vcpus = 1;
  MemoryConfig memory;
  std::filesystem::path kernel;
  std::optional<std::filesystem::path> initrd;
  std::string cmdline;
  SerialConfig serial;
  std::optional<std::filesystem::path> api_socket;
  std::vector<PmemConfig> pmem;
  std::vector<DiskConfig> disks;
  std::optional<ConsoleConfig> console;
  OnReset on_reset = OnReset::exit;

  uint64_t memory_bytes() const { return memory.size_mib << 20; }
  // The parts of the config that saved state depends on; a checkpoint taken under one identity
  // is refused under another. Paths of logs and sockets are not part of it.
  nlohmann::json identity() const;
};

inline constexpr uint64_t kMaxMemoryMib = 1ull << 20;  // 1 TiB
inline constexpr size_t kMaxCmdlineBytes = 4095;
inline constexpr size_t kMaxPmemRegions = 8;
inline constexpr size_t kMaxDisks = 8;

// Relative paths are resolved against base_dir (the directory holding the config file).
GuestConfig parse_config(const nlohmann::json& doc, const std::filesystem::path& base_dir, uint32_t max_vcpus);
GuestConfig load_config(const std::filesystem::path& file, uint32_t max_vcpus);

}  // namespace nvhv
