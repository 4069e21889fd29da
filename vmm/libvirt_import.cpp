// The domain level of `nvhv import-libvirt`: identity, vCPUs, memory, <os>, CPU, features,
// clock and lifecycle; then the guest.json (libvirt_import_guest.cpp) and the entry points.
#include "vmm/libvirt_import.hpp"

#include <fmt/core.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "vmm/config.hpp"
#include "vmm/libvirt_import_domain.hpp"

namespace nvhv {
namespace libvirt {
namespace {


const Reasons kUnsupportedDomainElements = {
    {"genid", "VM generation IDs are not supported by nvhv"},
    {"vcpus", "per-vCPU hotplug state is not supported by nvhv: every vCPU is present from boot"},
    {"iothreads", "I/O threads are not supported by nvhv"},
    {"iothreadids", "I/O threads are not supported by nvhv"},
    {"defaultiothread", "I/O threads are not supported by nvhv"},
    {"cputune", "host CPU pinning and scheduler tuning are not supported by nvhv"},
    {"memoryBacking", "memory backing options are not supported by nvhv: guest RAM lives in the nvdimm with alias 'ua-nvhv-ram' (docs/import-libvirt.md)"},
    {"memtune", "memory cgroup tuning is not supported by nvhv"},
    {"blkiotune", "block I/O cgroup tuning is not supported by nvhv"},
    {"numatune", "host NUMA placement is not supported by nvhv"},
    {"resource", "resource partitions are not supported by nvhv"},
    {"sysinfo", "SMBIOS and fw_cfg system information are not supported by nvhv (it has no firmware)"},
    {"bootloader", "host bootloaders are not supported by nvhv: it boots <os><kernel> directly"},
    {"bootloader_args", "host bootloaders are not supported by nvhv: it boots <os><kernel> directly"},
    {"idmap", "user namespace mappings (containers) are not supported by nvhv"},
    {"keywrap", "S390 key wrapping is not supported by nvhv"},
    {"launchSecurity", "confidential guests (SEV, TDX, ...) are not supported by nvhv"},
    {"perf", "performance monitoring events are not supported by nvhv"},
    {"on_lockfailure", "lock managers are not supported by nvhv"},
    {"throttlegroups", "disk I/O throttling is not supported by nvhv"},
    {"qemu:commandline", "QEMU command-line passthrough does not apply to nvhv"},
    {"qemu:capabilities", "QEMU capability overrides do not apply to nvhv"},
    {"qemu:override", "QEMU device property overrides do not apply to nvhv"},
    {"qemu:deprecation", "QEMU deprecation settings do not apply to nvhv"},
};

const Reasons kUnsupportedOsElements = {
    {"loader", "nvhv has no firmware: it boots <kernel> directly"},
    {"nvram", "nvhv has no firmware, so no UEFI variable store"},
    {"dtb", "device trees are not supported by nvhv (x86 guests)"},
    {"acpi", "nvhv provides no ACPI tables"},
    {"bootmenu", "nvhv has no firmware boot menu"},
    {"smbios", "nvhv has no firmware, so no SMBIOS tables"},
    {"bios", "nvhv has no BIOS"},
    {"firmware", "nvhv has no firmware: it boots <kernel> directly"},
    {"init", "container boot is not supported by nvhv"},
};

bool valid_nvhv_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

class DomainReader {
 public:
  explicit DomainReader(Domain& d) : d_(d) {}

  void read(const XmlElement& domain) {
    domain.expect_container({"type", "id"});
    if (!domain.attribute("type")) domain.fail("<domain> needs the attribute 'type' (kvm)");
    domain.attribute_in("type", {"kvm"}, "nvhv runs guests on KVM only (type='kvm')");
    std::set<std::string> seen;
    for (const XmlElement& e : domain.children()) {
      const std::string name = e.name();
      if (!seen.insert(name).second && name != "seclabel") e.fail(fmt::format("<{}> may appear only once in <domain>", name));
      if (name == "name") {
        e.expect_attributes({});
        d_.name = e.required_text();
        if (!valid_nvhv_name(d_.name)) e.fail(fmt::format("\"{}\": nvhv names are 1-64 characters of letters, digits, '-', '_' or '.'", d_.name));
      } else if (name == "uuid" || name == "title" || name == "description" || name == "metadata") {
        // Identification and application data (the nvhv hook metadata among it): no guest effect.
      } else if (name == "memory" || name == "currentMemory" || name == "maxMemory") {
        read_memory(e);
      } else if (name == "vcpu") {
        read_vcpu(e);
      } else if (name == "os") {
        read_os(e);
      } else if (name == "cpu") {
        read_cpu(e);
      } else if (name == "features") {
        read_features(e);
      } else if (name == "clock") {
        read_clock(e);
      } else if (name == "on_poweroff" || name == "on_reboot" || name == "on_crash") {
        read_lifecycle(e);
      } else if (name == "pm") {
        e.expect({}, {"suspend-to-mem", "suspend-to-disk"});
        for (const XmlElement& s : e.children()) {
          s.expect_empty({"enabled"});
          s.attribute_in("enabled", {"no"}, "nvhv has no ACPI sleep states");
        }
      } else if (name == "seclabel") {
        // Without a type, libvirt applies its security driver's default.
        if (e.attribute("type") != "none") e.fail_attribute("type", "nvhv does not confine guests with a security driver: only type='none'");
        e.expect_empty({"type", "model"});
      } else if (name == "devices") {
        read_devices(e, d_);
      } else {
        e.fail_unsupported(kUnsupportedDomainElements);
      }
    }
  }

 private:
  void read_memory(const XmlElement& e) {
    const std::string name = e.name();
    if (name == "memory")
      e.expect_attributes({"unit", "dumpCore"});  // dumpCore: whether QEMU core dumps include RAM
    else if (name == "maxMemory")
      e.expect_attributes({"unit", "slots"});
    else
      e.expect_attributes({"unit"});
    Located size{e.size_bytes("KiB"), e.path()};
    if (name == "memory") d_.memory = size;
    if (name == "currentMemory") d_.current_memory = size;
    // maxMemory only bounds memory hotplug, which nvhv does not do; libvirt needs it for nvdimms.
  }

  void read_vcpu(const XmlElement& e) {
    e.expect_attributes({"placement", "current", "cpuset"});
    if (e.attribute("cpuset")) e.fail_attribute("cpuset", "host CPU pinning is not supported by nvhv");
    e.attribute_in("placement", {"static"}, "automatic (numad) placement is not supported by nvhv");
    uint64_t n = e.number(e.required_text(), e.path(), kMaxVcpus);
    if (n == 0) e.fail(fmt::format("must be between 1 and {}", kMaxVcpus));
    if (auto current = e.attribute("current"); current && e.number(*current, e.attribute_path("current"), kMaxVcpus) != n)
      e.fail_attribute("current", "vCPU hotplug is not supported by nvhv: current must equal the vCPU count");
    d_.vcpus = Located{n, e.path()};
  }

  void read_os(const XmlElement& os) {
    os.expect_container({"firmware"});
    if (os.attribute("firmware")) os.fail_attribute("firmware", "nvhv has no firmware: it boots <kernel> directly");
    std::set<std::string> seen;
    for (const XmlElement& e : os.children()) {
      const std::string name = e.name();
      if (!seen.insert(name).second && name != "boot") e.fail(fmt::format("<{}> may appear only once in <os>", name));
      if (name == "type") {
        e.expect_attributes({"arch", "machine"});
        e.attribute_in("arch", {"x86_64"}, "nvhv runs x86_64 guests only");
        // machine (pc-i440fx-*, pc-q35-*) names a QEMU chipset; nvhv's machine is its own.
        if (e.required_text() != "hvm") e.fail(fmt::format("\"{}\": nvhv runs full-virtualization guests only (hvm)", e.text()));
      } else if (name == "kernel" || name == "initrd") {
        e.expect_attributes({});
        (name == "kernel" ? d_.kernel : d_.initrd) = d_.resolve(e, e.required_text());
      } else if (name == "cmdline") {
        e.expect_attributes({});
        d_.cmdline = e.text();
        if (d_.cmdline.size() > kMaxCmdlineBytes) e.fail(fmt::format("longer than {} bytes", kMaxCmdlineBytes));
      } else if (name == "boot") {
        // Firmware boot order; a direct kernel boot does not consult it.
        e.expect_empty({"dev"});
      } else if (name.rfind("init", 0) == 0) {
        e.fail_unsupported({{name, "container boot is not supported by nvhv"}});
      } else {
        e.fail_unsupported(kUnsupportedOsElements);
      }
    }
    if (!d_.kernel) os.fail("nvhv has no firmware: <os> needs a <kernel> to boot directly");
  }

  void read_cpu(const XmlElement& cpu) {
    const std::string why_model = "CPU models and features are not supported by nvhv: the guest sees KVM's supported CPUID (mode='host-passthrough')";
    cpu.expect_attributes({"mode", "check", "migratable"});
    cpu.attribute_in("mode", {"host-passthrough", "maximum", "custom"}, "the guest sees KVM's supported CPUID, like host-passthrough");
    // check and migratable concern libvirt's CPU comparison and migration; nvhv does neither.
    cpu.attribute_in("check", {"none", "partial", "full"}, "unknown check");
    cpu.attribute_in("migratable", {"on", "off"}, "unknown value");
    cpu.expect({"mode", "check", "migratable"}, {"topology", "numa"},
               {{"model", why_model}, {"vendor", why_model}, {"feature", why_model}, {"cache", "CPU cache descriptions are not supported by nvhv"}});
    if (auto topology = cpu.child("topology")) {
      topology->expect_empty({"sockets", "dies", "cores", "threads"});
      d_.topology_path = topology->path();
      auto field = [&](const char* attr, bool required) -> std::optional<Located> {
        auto v = required ? std::optional(topology->required_attribute(attr)) : topology->attribute(attr);
        if (!v) return std::nullopt;
        return Located{topology->number(*v, topology->attribute_path(attr), kMaxVcpus), topology->attribute_path(attr)};
      };
      d_.topology_sockets = field("sockets", true);
      d_.topology_dies = field("dies", false);
      d_.topology_cores = field("cores", true);
      d_.topology_threads = field("threads", true);
    }
    if (auto numa = cpu.child("numa")) {
      numa->expect({}, {"cell"}, {{"interconnects", "NUMA interconnect descriptions are not supported by nvhv"}});
      auto cells = numa->children("cell");
      if (cells.empty()) numa->fail("<numa> needs a <cell>");
      if (cells.size() > 1) cells[1].fail("nvhv shows the guest one NUMA node: a second cell is not supported");
      const XmlElement& cell = cells[0];
      cell.expect({"id", "cpus", "memory", "unit"}, {}, {{"distances", "NUMA distances are not supported by nvhv (one node)"}, {"cache", "NUMA memory caches are not supported by nvhv"}});
      cell.attribute_in("id", {"0"}, "nvhv's one NUMA node is node 0");
      d_.numa_cell_path = cell.path();
      uint64_t amount = cell.number(cell.required_attribute("memory"), cell.attribute_path("memory"), std::numeric_limits<uint64_t>::max());
      auto scale = unit_scale(cell.attribute("unit").value_or("KiB"));
      if (!scale) cell.fail_attribute("unit", fmt::format("unknown unit '{}'", *cell.attribute("unit")));
      if (amount > std::numeric_limits<uint64_t>::max() / *scale) cell.fail_attribute("memory", "does not fit in 64 bits of bytes");
      d_.numa_cell_memory = Located{amount * *scale, cell.attribute_path("memory")};
      if (auto cpus = cell.attribute("cpus")) d_.numa_cell_cpus = parse_cpuset(cell, "cpus", *cpus, kMaxVcpus);
    }
  }

  void read_features(const XmlElement& features) {
    features.expect_container({});
    for (const XmlElement& f : features.children()) {
      const std::string name = f.name();
      if (name == "acpi" || name == "apic" || name == "pae") {
        f.expect_empty();
      } else if (name == "pmu" || name == "vmport" || name == "smm" || name == "vmcoreinfo") {
        f.expect_empty({"state"});
        if (f.attribute("state") != "off") f.fail(fmt::format("nvhv has no {}: only <{} state='off'/>", name, name));
      } else if (name == "ioapic") {
        f.expect_empty({"driver"});
        f.attribute_in("driver", {"kvm"}, "nvhv's IOAPIC is KVM's in-kernel one");
      } else {
        f.fail(fmt::format("the hypervisor feature <{}> is not supported by nvhv", name));
      }
    }
  }

  void read_clock(const XmlElement& clock) {
    clock.expect({"offset"}, {"timer"});
    clock.attribute_in("offset", {"utc"}, "nvhv's RTC starts at the host's UTC time (the guest may set its own offset)");
    for (const XmlElement& t : clock.children("timer")) {
      std::string timer = t.required_attribute("name");
      std::string present = t.attribute("present").value_or("yes");
      if (!(timer == "hpet" && present == "no") && !(timer == "kvmclock" && present == "yes"))
        t.fail(fmt::format("timer '{}' settings are not supported by nvhv: the guest has kvmclock, a PIT and a CMOS RTC as they are, and no HPET", timer));
      t.expect_empty({"name", "present"});
    }
  }

  void read_lifecycle(const XmlElement& e) {
    e.expect_attributes({});
    std::string action = e.required_text();
    if (action == "destroy") return;
    if (e.name() == "on_reboot") {
      if (action == "restart") {
        d_.reboot_on_reset = true;  // nvhv reboots the guest itself, in the same process
        return;
      }
      e.fail(fmt::format("'{}': nvhv either exits (destroy) or cold-boots the guest again (restart) when it resets: only destroy or restart", action));
    }
    e.fail(fmt::format("'{}': nvhv exits when the guest powers off or crashes (restarting is its supervisor's job): only destroy", action));
  }

  Domain& d_;
};

}  // namespace

std::filesystem::path Domain::resolve(const XmlElement& where, const std::string& p) const {
  if (p.empty()) where.fail("the path must not be empty");
  std::filesystem::path path(p);
  return (path.is_absolute() ? path : base_dir / path).lexically_normal();
}

std::set<uint32_t> parse_cpuset(const XmlElement& where, std::string_view attribute, const std::string& text, uint32_t limit) {
  std::set<uint32_t> cpus;
  const std::string at = where.attribute_path(attribute);
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    bool exclude = !item.empty() && item[0] == '^';
    std::string_view range = std::string_view(item).substr(exclude ? 1 : 0);
    auto dash = range.find('-');
    uint64_t first = where.number(range.substr(0, dash), at, limit);
    uint64_t last = dash == std::string_view::npos ? first : where.number(range.substr(dash + 1), at, limit);
    if (last < first || (exclude && dash != std::string_view::npos)) throw ConfigError(fmt::format("{}: \"{}\" is not a CPU list", at, text));
    for (uint64_t c = first; c <= last; ++c) exclude ? (void)cpus.erase(static_cast<uint32_t>(c)) : (void)cpus.insert(static_cast<uint32_t>(c));
  }
  return cpus;
}

}  // namespace libvirt

nlohmann::ordered_json import_libvirt_domain(std::string_view xml, const std::filesystem::path& base_dir) {
  libvirt::XmlDocument doc(xml);
  libvirt::XmlElement root = doc.root();
  if (root.name() != "domain") root.fail(fmt::format("expected a libvirt <domain>, found <{}>", root.name()));
  libvirt::Domain domain;
  domain.base_dir = base_dir;
  libvirt::DomainReader(domain).read(root);
  nlohmann::ordered_json out = libvirt::to_guest_json(domain, root);
  // The importer's promise is a guest.json nvhv accepts; a failure here is the importer's bug.
  try {
    parse_config(nlohmann::json::parse(out.dump()), base_dir, libvirt::kMaxVcpus);
  } catch (const ConfigError& e) {
    throw std::logic_error(fmt::format("nvhv import-libvirt made an invalid guest.json: {}", e.what()));
  }
  return out;
}

nlohmann::ordered_json import_libvirt_file(const std::string& file) {
  std::string xml;
  std::filesystem::path base_dir;
  if (file == "-") {
    xml.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    base_dir = std::filesystem::current_path();
  } else {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) throw ConfigError(fmt::format("{}: is a directory, not a domain XML file", file));
    std::ifstream in(file, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("{}: cannot open: {}", file, std::strerror(errno)));
    try {
      xml.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::exception& e) {
      throw ConfigError(fmt::format("{}: cannot read: {}", file, e.what()));
    }
    if (in.bad()) throw ConfigError(fmt::format("{}: cannot read: {}", file, std::strerror(errno)));
    base_dir = std::filesystem::absolute(file).parent_path();
  }
  try {
    return import_libvirt_domain(xml, base_dir);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", file == "-" ? "<stdin>" : file, e.what()));
  }
}

}  // namespace nvhv
