#pragma once
// What the importer gathers from one walk over the domain XML, before it checks the parts that
// depend on each other (memory accounting, vCPU topology, serial vs console) and writes JSON.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/libvirt_import_xml.hpp"

namespace nvhv::libvirt {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint32_t kMaxVcpus = 254;  // nvhv's own limit; the host's KVM limit is checked at run time

struct Located {
  uint64_t value = 0;
  std::string path;  // where the value came from, for messages
};

struct Nvdimm {
  std::filesystem::path file;
  Located size;      // bytes
  std::string path;  // the <memory model='nvdimm'> element
  bool holds_ram = false;
};

struct Disk {
  std::filesystem::path file;
  bool readonly = false;
  std::string target_dev;  // vda, vdb, ...: only checked for duplicates
  std::string path;
};

// A character device's host side, as nvhv can honour it.
struct CharBackend {
  std::string type;  // pty, stdio, file, null
  std::filesystem::path file;
  std::string path;
};

struct Domain {
  std::filesystem::path base_dir;
  std::string name;
  std::optional<Located> vcpus;
  std::optional<Located> memory;          // bytes
  std::optional<Located> current_memory;  // bytes
  std::optional<Located> numa_cell_memory;
  std::optional<std::set<uint32_t>> numa_cell_cpus;
  std::string numa_cell_path;
  std::optional<Located> topology_sockets, topology_dies, topology_cores, topology_threads;
  std::string topology_path;

  std::optional<std::filesystem::path> kernel, initrd;
  std::string cmdline;

  std::vector<Nvdimm> nvdimms;
  std::vector<Disk> disks;
  std::optional<CharBackend> serial;          // COM1 from <serial>
  std::optional<CharBackend> serial_console;  // COM1 from <console> (target type serial)
  std::optional<CharBackend> virtio_console;
  bool reboot_on_reset = false;  // <on_reboot>restart</on_reboot>: guest.json "on_reset": "reboot"

  std::filesystem::path resolve(const XmlElement& where, const std::string& p) const;
};

// <devices>: fills the device parts of `d`.
void read_devices(const XmlElement& devices, Domain& d);

// The checks that span elements, then the guest.json; `root` is the <domain> element.
nlohmann::ordered_json to_guest_json(const Domain& d, const XmlElement& root);

// libvirt's cpuset syntax ("0-3,^2,5") as a set of CPU numbers below `limit`.
std::set<uint32_t> parse_cpuset(const XmlElement& where, std::string_view attribute, const std::string& text, uint32_t limit);

}  // namespace nvhv::libvirt
