#include "tests/bench/bench_guests.hpp"

#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/support/child_process.hpp"

namespace nvhv::bench {

std::string nvhv_bin() { return test::build_dir() + "/bin/nvhv"; }
std::string testos_elf() { return test::build_dir() + "/guest-images/testos.elf"; }

std::string write_nvhv_config(const std::string& dir, const std::string& name, int vcpus, int mem_mib,
                              const std::string& cmdline, const std::string& backing) {
  nlohmann::json memory = {{"size_mib", mem_mib}};
  if (!backing.empty()) memory["backing"] = backing;
  nlohmann::json cfg = {{"name", name}, {"vcpus", vcpus}, {"memory", memory}, {"kernel", testos_elf()}, {"cmdline", cmdline}};
  std::string path = dir + "/" + name + ".json";
  std::ofstream(path) << cfg.dump(2);
  return path;
}

std::string qemu_bin() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    std::string candidate = d + "/qemu-system-x86_64";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string qboot_rom() {
  // Debian's qemu-system-data installs it here (dpkg -L qemu-system-data).
  const char* rom = "/usr/share/qemu/qboot.rom";
  return ::access(rom, R_OK) == 0 ? rom : "";
}

std::string qemu_firmware(const QemuGuest& g) {
  return g.use_qboot && g.vcpus == 1 && !qboot_rom().empty() ? "qboot" : "SeaBIOS";
}

std::vector<std::string> qemu_argv(const QemuGuest& g) {
  std::vector<std::string> a = {qemu_bin(), "-enable-kvm", "-m", std::to_string(g.mem_mib), "-nographic", "-no-reboot",
                                "-serial", "stdio", "-display", "none", "-monitor", "none",
                                "-kernel", testos_elf(), "-append", g.cmdline};
  if (qemu_firmware(g) == "qboot") a.insert(a.end(), {"-bios", qboot_rom()});
  // SeaBIOS lists one processor per package in its MP table (docs/testos.md).
  if (g.vcpus > 1) a.insert(a.end(), {"-smp", std::to_string(g.vcpus) + ",sockets=" + std::to_string(g.vcpus)});
  if (!g.ram_file.empty()) {
    a.insert(a.end(), {"-object", "memory-backend-file,id=ram,size=" + std::to_string(g.mem_mib) + "M,mem-path=" + g.ram_file + ",share=on",
                       "-machine", "memory-backend=ram"});
  }
  if (!g.qmp_socket.empty()) a.insert(a.end(), {"-qmp", "unix:" + g.qmp_socket + ",server=on,wait=off"});
  if (!g.incoming.empty()) a.insert(a.end(), {"-incoming", g.incoming});
  return a;
}

ScratchDir::ScratchDir(const std::string& parent) {
  std::string tmpl = parent + "/nvhv-bench-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp under " + parent + " failed");
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string filesystem_type(const std::string& path) {
  struct statfs s {};
  if (::statfs(path.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case TMPFS_MAGIC: return "tmpfs";
    case EXT4_SUPER_MAGIC: return "ext4";  // also ext2/ext3
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    default: {
      std::ostringstream os;
      os << "fs-0x" << std::hex << s.f_type;
      return os.str();
    }
  }
}

}  // namespace nvhv::bench
