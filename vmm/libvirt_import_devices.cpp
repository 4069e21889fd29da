// <devices> of a libvirt domain: virtio disks, nvdimms, the serial port and consoles, and the
// default controllers and PS/2 inputs libvirt adds on its own. Everything else is an error.
#include <fmt/core.h>

#include "vmm/config.hpp"
#include "vmm/libvirt_import.hpp"
#include "vmm/libvirt_import_domain.hpp"

namespace nvhv::libvirt {
namespace {

const Reasons kUnsupportedDevices = {
    {"interface", "network interfaces are not supported by nvhv"},
    {"graphics", "graphical displays are not supported by nvhv (its console is the serial port)"},
    {"video", "video adapters are not supported by nvhv"},
    {"sound", "sound devices are not supported by nvhv"},
    {"hostdev", "host device assignment is not supported by nvhv"},
    {"redirdev", "USB redirection is not supported by nvhv (it has no USB)"},
    {"redirfilter", "USB redirection is not supported by nvhv (it has no USB)"},
    {"hub", "USB hubs are not supported by nvhv (it has no USB)"},
    {"smartcard", "smartcard readers are not supported by nvhv"},
    {"tpm", "TPM devices are not supported by nvhv"},
    {"watchdog", "watchdog devices are not supported by nvhv"},
    {"rng", "random number generator devices are not supported by nvhv"},
    {"panic", "panic notifier devices are not supported by nvhv"},
    {"shmem", "shared memory devices are not supported by nvhv"},
    {"iommu", "IOMMU devices are not supported by nvhv"},
    {"vsock", "vsock devices are not supported by nvhv"},
    {"crypto", "crypto devices are not supported by nvhv"},
    {"filesystem", "shared host filesystems are not supported by nvhv"},
    {"lease", "lock manager leases are not supported by nvhv"},
    {"parallel", "parallel ports are not supported by nvhv"},
    {"channel", "virtio-serial channels (guest agents) are not supported by nvhv; its one virtio console is <console><target type='virtio'/>"},
    {"nvram", "NVRAM devices are not supported by nvhv"},
};

std::optional<std::string> read_alias(const XmlElement& device) {
  auto alias = device.child("alias");
  if (!alias) return std::nullopt;
  alias->expect_empty({"name"});
  return alias->required_attribute("name");
}

// Where libvirt or the user put a device on a bus: nvhv places every device itself.
void read_address(const XmlElement& device, std::initializer_list<std::string_view> types) {
  auto address = device.child("address");
  if (!address) return;
  std::string type = address->attribute_in("type", types, "nvhv places this device itself, and not on this kind of bus").value_or("");
  if (type == "pci")
    address->expect_empty({"type", "domain", "bus", "slot", "function", "multifunction"});
  else if (type == "dimm")
    address->expect_empty({"type", "slot", "base"});
  else if (type == "virtio-serial")
    address->expect_empty({"type", "controller", "bus", "port"});
  else
    address->expect_empty({"type"});
}

void read_disk(const XmlElement& e, Domain& d) {
  std::string type = e.attribute("type").value_or("file");
  if (type != "file") e.fail_attribute("type", fmt::format("'{}' disks are not supported by nvhv: only type='file' (a raw image file)", type));
  std::string device = e.attribute("device").value_or("disk");
  if (device != "disk") e.fail_attribute("device", fmt::format("'{}' devices are not supported by nvhv: only virtio disks (device='disk')", device));
  e.expect({"type", "device", "model"}, {"driver", "source", "target", "readonly", "alias", "address", "backingStore"},
           {{"boot", "per-device boot order is not supported by nvhv: it boots <os><kernel> directly"},
            {"shareable", "shareable disks are not supported by nvhv"},
            {"transient", "transient disks are not supported by nvhv"},
            {"serial", "disk serial numbers are not supported by nvhv"},
            {"iotune", "disk I/O throttling is not supported by nvhv"},
            {"encryption", "encrypted disk images are not supported by nvhv (raw images only)"}});
  e.attribute_in("model", {"virtio", "virtio-non-transitional"}, "nvhv's virtio-blk is virtio 1.x only (non-transitional)");
  if (d.disks.size() == kMaxDisks) e.fail(fmt::format("nvhv supports at most {} disks", kMaxDisks));

  Disk disk;
  disk.path = e.path();
  if (auto driver = e.child("driver")) {
    driver->expect_empty({"name", "type"});
    driver->attribute_in("name", {"qemu"}, "nvhv is the disk driver: only libvirt's name='qemu' is accepted");
    driver->attribute_in("type", {"raw"}, "nvhv reads raw disk images only");
  }
  XmlElement source = e.required_child("source");
  source.expect_empty({"file", "index"});
  disk.file = d.resolve(source, source.required_attribute("file"));
  XmlElement target = e.required_child("target");
  target.expect_empty({"dev", "bus"});
  std::string dev = target.required_attribute("dev");
  auto bus = target.attribute("bus");
  if (bus ? *bus != "virtio" : dev.rfind("vd", 0) != 0)
    target.fail_attribute("bus", fmt::format("'{}' disks are not supported by nvhv: only bus='virtio'", bus.value_or(dev)));
  for (const Disk& other : d.disks)
    if (other.target_dev == dev) target.fail_attribute("dev", fmt::format("'{}' is already the target of {}", dev, other.path));
  disk.target_dev = dev;
  if (auto ro = e.child("readonly")) {
    ro->expect_empty();
    disk.readonly = true;
  }
  // libvirt writes an empty <backingStore/> for an image without a backing file.
  if (auto backing = e.child("backingStore")) {
    if (backing->attribute("type") || !backing->children().empty()) backing->fail("backing files are not supported by nvhv (raw images only)");
    backing->expect_empty();
  }
  read_alias(e);
  read_address(e, {"pci"});
  d.disks.push_back(std::move(disk));
}

std::string memory_model_reason(const std::string& model) {
  if (model == "dimm") return "DIMM memory modules are not supported by nvhv: guest RAM is <memory>";
  if (model == "virtio-pmem") return "virtio-pmem is not supported by nvhv: guest pmem is model='nvdimm' (shown as E820 persistent memory)";
  if (model == "virtio-mem") return "virtio-mem is not supported by nvhv: guest RAM is <memory>";
  return fmt::format("memory device model '{}' is not supported by nvhv: only 'nvdimm'", model);
}

void read_nvdimm(const XmlElement& e, Domain& d) {
  std::string model = e.required_attribute("model");
  if (model != "nvdimm") e.fail_attribute("model", memory_model_reason(model));
  e.expect({"model", "access"}, {"source", "target", "alias", "address"}, {{"uuid", "nvdimm UUIDs (pSeries) are not supported by nvhv"}});
  e.attribute_in("access", {"shared"}, "nvhv maps nvdimm files shared, so guest writes reach the file; 'private' is not supported");

  Nvdimm dimm;
  dimm.path = e.path();
  XmlElement source = e.required_child("source");
  source.expect({}, {"path", "alignsize", "pmem"},
                {{"pagesize", "host page sizes for memory devices are not supported by nvhv"},
                 {"nodemask", "host NUMA placement is not supported by nvhv"}});
  XmlElement path = source.required_child("path");
  path.expect_attributes({});
  dimm.file = d.resolve(path, path.required_text());
  if (auto align = source.child("alignsize")) {
    align->expect_attributes({"unit"});
    uint64_t bytes = align->size_bytes("KiB");
    if (bytes == 0 || (bytes & (bytes - 1)) || bytes > 2 * kMiB)
      align->fail(fmt::format("{} bytes: nvhv aligns nvdimm mappings to 2 MiB; only a power of two up to 2 MiB is supported", bytes));
  }
  // <pmem/> asks for persistence guarantees; nvhv detects DAX and makes writes durable anyway.
  if (auto pmem = source.child("pmem")) pmem->expect_empty();

  XmlElement target = e.required_child("target");
  target.expect({}, {"size", "node"},
                {{"label", "nvdimm label areas are not supported by nvhv: it shows pmem as E820 persistent memory without labels"},
                 {"readonly", "read-only nvdimms are not supported by nvhv"}});
  XmlElement size = target.required_child("size");
  size.expect_attributes({"unit"});
  dimm.size = {size.size_bytes("KiB"), size.path()};
  if (auto node = target.child("node")) {
    node->expect_attributes({});
    if (node->number(node->required_text(), node->path(), 1u << 16) != 0) node->fail("nvhv shows the guest one NUMA node: only node 0");
  }
  dimm.holds_ram = read_alias(e) == std::string(kLibvirtRamAlias);
  read_address(e, {"dimm"});
  size_t pmem_regions = 0;
  for (const Nvdimm& other : d.nvdimms) {
    if (dimm.holds_ram && other.holds_ram) e.fail(fmt::format("a second nvdimm with alias '{}': {} already holds guest RAM", kLibvirtRamAlias, other.path));
    pmem_regions += !other.holds_ram;
  }
  if (!dimm.holds_ram && pmem_regions == kMaxPmemRegions) e.fail(fmt::format("nvhv supports at most {} pmem regions", kMaxPmemRegions));
  d.nvdimms.push_back(std::move(dimm));
}

// The host side of <serial> and <console>.
CharBackend read_char_backend(const XmlElement& e, Domain& d) {
  CharBackend b;
  b.path = e.path();
  b.type = e.required_attribute("type");
  e.attribute_in("type", {"pty", "stdio", "file", "null"},
                 "nvhv writes the guest's console to its standard output or to a file: only pty, stdio, file and null");
  auto source = e.child("source");
  if (b.type == "file") {
    if (!source) e.fail("a file console needs <source path='...'/>");
    source->expect_empty({"path", "append"});
    source->attribute_in("append", {"on"}, "nvhv always appends to console files");
    b.file = d.resolve(*source, source->required_attribute("path"));
  } else if (source) {
    // A running domain's XML names the pty libvirt allocated; nvhv allocates none.
    if (b.type != "pty") source->fail(fmt::format("a {} console takes no <source>", b.type));
    source->expect_empty({"path"});
  }
  return b;
}

const Reasons kCharReasons = {{"log", "console log files are not supported by nvhv: use type='file'"},
                              {"protocol", "network consoles are not supported by nvhv"}};

void read_serial(const XmlElement& e, Domain& d) {
  CharBackend b = read_char_backend(e, d);
  e.expect({"type"}, {"source", "target", "alias", "address"}, kCharReasons);
  if (auto target = e.child("target")) {
    target->expect({"type", "port"}, {"model"});
    target->attribute_in("type", {"isa-serial"}, "nvhv's serial port is a 16550A on the ISA bus (COM1)");
    target->attribute_in("port", {"0"}, "nvhv has one serial port, COM1 (port 0)");
    if (auto model = target->child("model")) {
      model->expect_empty({"name"});
      model->attribute_in("name", {"isa-serial"}, "nvhv's serial port is a 16550A (isa-serial)");
    }
  }
  read_alias(e);
  if (auto address = e.child("address")) {
    address->expect_empty({"type", "iobase", "irq"});
    address->attribute_in("type", {"isa"}, "nvhv's serial port is on the ISA bus");
    address->attribute_in("iobase", {"0x3f8", "0x3F8"}, "nvhv's serial port is COM1 at 0x3f8");
    address->attribute_in("irq", {"4", "0x4"}, "nvhv's serial port is COM1 on IRQ 4");
  }
  if (d.serial) e.fail(fmt::format("nvhv has one serial port, COM1, and {} is it", d.serial->path));
  d.serial = std::move(b);
}

void read_console(const XmlElement& e, Domain& d) {
  CharBackend b = read_char_backend(e, d);
  e.expect({"type", "tty"}, {"source", "target", "alias", "address"}, kCharReasons);
  std::string target_type = "serial";
  if (auto target = e.child("target")) {
    target->expect_empty({"type", "port"});
    target_type = target->attribute_in("type", {"serial", "virtio"}, "nvhv's consoles are COM1 (serial) and one virtio console").value_or("serial");
    target->attribute_in("port", {"0"}, "nvhv has one console of each kind (port 0)");
  }
  read_alias(e);
  if (target_type == "serial") {
    read_address(e, {});
    if (d.serial_console) e.fail(fmt::format("only one console can be the serial port, and {} is", d.serial_console->path));
    d.serial_console = std::move(b);
    return;
  }
  read_address(e, {"virtio-serial"});
  if (b.type == "pty" || b.type == "stdio")
    e.fail_attribute("type", fmt::format("'{}': nvhv's virtio console writes to a file only (type='file', or 'null' to discard)", b.type));
  if (d.virtio_console) e.fail(fmt::format("nvhv has one virtio console, and {} is it", d.virtio_console->path));
  d.virtio_console = std::move(b);
}

// libvirt adds controllers of its machine types on its own; nvhv's guest has none of them but
// its PCI root bus, and devices that would need them are refused where they are declared.
void read_controller(const XmlElement& e) {
  std::string type = e.required_attribute("type");
  auto model = e.attribute("model");
  auto index = e.attribute("index").value_or("0");
  auto only_first = [&](const char* what) {
    if (index != "0") e.fail_attribute("index", fmt::format("a second {} controller is not supported by nvhv", what));
  };
  if (type == "pci") {
    e.attribute_in("model", {"pci-root", "pcie-root", "pcie-root-port"}, "nvhv puts every device on its PCI root bus; PCI bridges and expanders are not supported");
    if (model != "pcie-root-port") only_first("PCI root");
  } else if (type == "usb") {
    e.attribute_in("model", {"none", "piix3-uhci", "qemu-xhci"}, "nvhv has no USB: only libvirt's default USB controller (or model='none') is accepted");
    only_first("USB");
  } else if (type == "ide" || type == "sata" || type == "virtio-serial") {
    if (model) e.fail_attribute("model", fmt::format("a {} controller model is not supported by nvhv", type));
    only_first(type.c_str());
  } else {
    e.fail_attribute("type", fmt::format("{} controllers are not supported by nvhv", type));
  }
  e.expect({"type", "index", "model", "ports"}, {"model", "target", "alias", "address"});
  if (e.attribute("ports") && type != "usb") e.fail_attribute("ports", "not supported by nvhv");
  if (auto m = e.child("model")) m->expect_empty({"name"});
  if (auto target = e.child("target")) target->expect_empty({"chassis", "port", "busNr", "index"});
  read_alias(e);
  read_address(e, {"pci"});
}

void read_input(const XmlElement& e) {
  e.required_attribute("type");
  e.attribute_in("type", {"mouse", "keyboard"}, "input devices are not supported by nvhv");
  e.attribute_in("bus", {"ps2"}, "input devices are not supported by nvhv; only libvirt's implicit PS/2 mouse and keyboard are accepted");
  e.expect({"type", "bus"}, {"alias", "address"});
  read_alias(e);
  read_address(e, {});
}

}  // namespace

void read_devices(const XmlElement& devices, Domain& d) {
  devices.expect_container({});
  for (const XmlElement& e : devices.children()) {
    const std::string name = e.name();
    if (name == "emulator") {
      e.expect_attributes({});  // the QEMU binary libvirt would run; nvhv is the emulator
      e.text();
    } else if (name == "disk") {
      read_disk(e, d);
    } else if (name == "memory") {
      read_nvdimm(e, d);
    } else if (name == "serial") {
      read_serial(e, d);
    } else if (name == "console") {
      read_console(e, d);
    } else if (name == "controller") {
      read_controller(e);
    } else if (name == "input") {
      read_input(e);
    } else if (name == "memballoon") {
      if (e.attribute("model") != "none") e.fail_attribute("model", "memory balloons are not supported by nvhv: only model='none'");
      e.expect({"model"}, {});
    } else if (name == "audio") {
      e.required_attribute("type");
      e.attribute_in("type", {"none"}, "audio backends are not supported by nvhv: only type='none'");
      e.expect_empty({"id", "type"});
    } else {
      e.fail_unsupported(kUnsupportedDevices);
    }
  }
}

}  // namespace nvhv::libvirt
