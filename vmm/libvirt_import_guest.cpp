// The checks of `nvhv import-libvirt` that span elements (memory accounting, vCPU topology,
// serial vs console, shared files) and the guest.json made of what the walk gathered.
#include <fmt/core.h>

#include <limits>
#include <map>

#include "vmm/config.hpp"
#include "vmm/libvirt_import.hpp"
#include "vmm/libvirt_import_domain.hpp"

namespace nvhv::libvirt {
namespace {

std::string mib(uint64_t bytes) {
  return bytes % kMiB ? fmt::format("{} bytes", bytes) : fmt::format("{} MiB", bytes / kMiB);
}

uint64_t whole_mib(uint64_t bytes, const std::string& path, const std::string& what, uint64_t multiple = 1) {
  if (bytes == 0 || bytes % (multiple * kMiB))
    throw ConfigError(fmt::format("{}: {} is {}, not a positive multiple of {} MiB", path, what, mib(bytes), multiple));
  return bytes / kMiB;
}

// libvirt counts memory devices in <memory>: guest RAM is <memory> minus every nvdimm (which
// is also the NUMA cell's memory when there is one). The nvdimm marked ua-nvhv-ram is where that
// RAM lives, so it must be exactly as large.
uint64_t guest_ram_mib(const Domain& d, const XmlElement& root) {
  uint64_t devices = 0;
  for (const Nvdimm& n : d.nvdimms) {
    if (n.size.value > std::numeric_limits<uint64_t>::max() - devices) throw ConfigError(n.size.path + ": the memory devices add up to more than 64 bits of bytes");
    devices += n.size.value;
  }
  if (!d.memory && !d.numa_cell_memory) root.fail("<domain> needs a <memory> element");
  // Without <memory>, libvirt takes the NUMA cell as the initial memory.
  const Located& given = d.memory ? *d.memory : *d.numa_cell_memory;
  const std::string& where = given.path;
  if (!d.memory && given.value > std::numeric_limits<uint64_t>::max() - devices) throw ConfigError(where + ": too large");
  uint64_t total = d.memory ? given.value : given.value + devices;
  if (d.current_memory && d.current_memory->value != total)
    throw ConfigError(fmt::format("{}: {} differs from <memory> ({}): nvhv has no balloon, so they must be equal", d.current_memory->path, mib(d.current_memory->value), mib(total)));
  if (total <= devices)
    throw ConfigError(fmt::format("{}: {} leaves no guest RAM beside the memory devices ({}); libvirt counts them in <memory>", where, mib(total), mib(devices)));
  uint64_t ram = total - devices;
  if (d.numa_cell_memory && d.numa_cell_memory->value != ram)
    throw ConfigError(fmt::format("{}: the NUMA cell has {} but <memory> minus the memory devices is {}; libvirt requires them to agree", d.numa_cell_memory->path, mib(d.numa_cell_memory->value), mib(ram)));
  uint64_t ram_mib = whole_mib(ram, where, "guest RAM (<memory> minus the memory devices)");
  if (ram_mib > kMaxMemoryMib) throw ConfigError(fmt::format("{}: guest RAM of {} is more than nvhv's {} MiB", where, mib(ram), kMaxMemoryMib));
  for (const Nvdimm& n : d.nvdimms)
    if (n.holds_ram && n.size.value != ram)
      throw ConfigError(fmt::format("{}: the nvdimm holding guest RAM ('{}') is {}, but guest RAM (<memory> minus the memory devices) is {}; they must be equal",
                                    n.size.path, kLibvirtRamAlias, mib(n.size.value), mib(ram)));
  return ram_mib;
}

void check_topology(const Domain& d, uint32_t vcpus) {
  if (d.topology_sockets) {
    auto one = [&](const std::optional<Located>& v, const char* what) {
      if (v && v->value != 1) throw ConfigError(fmt::format("{}: nvhv shows one package of single-threaded cores: {} must be 1", v->path, what));
    };
    one(d.topology_sockets, "sockets");
    one(d.topology_dies, "dies");
    one(d.topology_threads, "threads");
    if (d.topology_cores->value != vcpus)
      throw ConfigError(fmt::format("{}: {} cores, but <vcpu> is {}: nvhv shows one package of {} cores", d.topology_cores->path, d.topology_cores->value, vcpus, vcpus));
  }
  if (d.numa_cell_cpus) {
    std::set<uint32_t> all;
    for (uint32_t i = 0; i < vcpus; ++i) all.insert(i);
    if (*d.numa_cell_cpus != all)
      throw ConfigError(fmt::format("{}/@cpus: nvhv's one NUMA node holds every vCPU: cpus must be 0-{}", d.numa_cell_path, vcpus - 1));
  }
}

// COM1 is the <serial> element, or a <console> with target type serial, which libvirt treats as
// the same device: when both are there they must agree.
std::optional<CharBackend> com1(const Domain& d) {
  if (d.serial && d.serial_console) {
    const CharBackend &s = *d.serial, &c = *d.serial_console;
    if (s.type != c.type || s.file != c.file)
      throw ConfigError(fmt::format("{}: this console is the serial port {}, but they name different outputs ({} vs {})", c.path, s.path, c.type, s.type));
  }
  return d.serial ? d.serial : d.serial_console;
}

void check_distinct_files(const Domain& d) {
  std::map<std::filesystem::path, std::string> users;
  auto claim = [&](const std::filesystem::path& file, const std::string& path) {
    auto [it, fresh] = users.emplace(file, path);
    if (!fresh) throw ConfigError(fmt::format("{}: {} is already used by {}", path, file.string(), it->second));
  };
  for (const Nvdimm& n : d.nvdimms) claim(n.file, n.path);
  for (const Disk& disk : d.disks) claim(disk.file, disk.path);
}

}  // namespace

nlohmann::ordered_json to_guest_json(const Domain& d, const XmlElement& root) {
  using json = nlohmann::ordered_json;
  if (d.name.empty()) root.fail("<domain> needs a <name>");
  if (!d.kernel) root.fail("nvhv has no firmware: <domain> needs <os><kernel> to boot directly");
  uint32_t vcpus = d.vcpus ? static_cast<uint32_t>(d.vcpus->value) : 1;
  check_topology(d, vcpus);
  check_distinct_files(d);
  json out{{"schema_version", 1}, {"name", d.name}, {"vcpus", vcpus}};
  out["memory"] = {{"size_mib", guest_ram_mib(d, root)}};
  out["kernel"] = d.kernel->string();
  if (d.initrd) out["initrd"] = d.initrd->string();
  if (!d.cmdline.empty()) out["cmdline"] = d.cmdline;
  json pmem = json::array();
  for (const Nvdimm& n : d.nvdimms) {
    if (n.holds_ram) {
      out["memory"]["backing"] = n.file.string();
      continue;
    }
    pmem.push_back({{"path", n.file.string()}, {"size_mib", whole_mib(n.size.value, n.size.path, "a pmem region", 2)}});
  }
  if (!pmem.empty()) out["pmem"] = pmem;
  if (auto serial = com1(d)) {
    if (serial->type == "file") out["serial"] = {{"output", serial->file.string()}};
    if (serial->type == "null") out["serial"] = {{"output", "/dev/null"}};
    if (serial->type == "pty" || serial->type == "stdio") out["serial"] = {{"output", "stdout"}};
  }
  if (!d.disks.empty()) {
    json disks = json::array();
    for (const Disk& disk : d.disks) disks.push_back({{"path", disk.file.string()}, {"readonly", disk.readonly}});
    out["disks"] = disks;
  }
  if (d.virtio_console) {
    out["console"] = json::object();
    if (d.virtio_console->type == "file") out["console"]["log"] = d.virtio_console->file.string();
  }
  if (d.reboot_on_reset) out["on_reset"] = "reboot";
  return out;
}

}  // namespace nvhv::libvirt
