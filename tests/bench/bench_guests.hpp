#pragma once
// How the benchmarks start the same testos guest under nvhv and under QEMU.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv::bench {

std::string nvhv_bin();
std::string testos_elf();

// Writes dir/name.json for nvhv and returns its path. backing empty: anonymous memory.
std::string write_nvhv_config(const std::string& dir, const std::string& name, int vcpus, int mem_mib,
                              const std::string& cmdline, const std::string& backing = "");

// QEMU, as found in PATH; empty when it is not installed.
std::string qemu_bin();
// qboot from the qemu-system-data package, empty when missing. It boots testos in a fraction of
// a second but has no MP table, so testos sees one vCPU under it.
std::string qboot_rom();

struct QemuGuest {
  int vcpus = 1;
  int mem_mib = 256;
  std::string cmdline;
  std::string ram_file;    // empty: anonymous RAM (-m); else a shared memory-backend-file
  std::string qmp_socket;  // empty: no QMP
  bool use_qboot = true;   // ignored (SeaBIOS) when vcpus > 1, so testos sees every vCPU
  std::string incoming;    // e.g. "defer"
};
// The firmware a QemuGuest boots with: "qboot" or "SeaBIOS".
std::string qemu_firmware(const QemuGuest& g);
std::vector<std::string> qemu_argv(const QemuGuest& g);

// A fresh directory under parent, removed with everything in it when the object dies.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& parent);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// "tmpfs", "ext4", "xfs", ... for the filesystem holding path (statfs magic).
std::string filesystem_type(const std::string& path);

}  // namespace nvhv::bench
