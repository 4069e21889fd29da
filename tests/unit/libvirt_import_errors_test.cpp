// `nvhv import-libvirt` refuses what nvhv cannot honour and malformed XML: every case names the
// element (XPath-like) and why, through the library and through the real command (exit 2,
// nothing on stdout, one line on stderr).
#include "vmm/libvirt_import.hpp"

#include <string>
#include <vector>

#include "tests/unit/libvirt_import_support.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::test {
namespace {

struct Bad {
  std::string label;
  std::string xml;
  std::string at;    // the error starts with "<at>: "
  std::string says;  // and contains this
};

// A valid domain with room for more: @DOMAIN@ after <os>, @DEVICES@ in <devices>, @OS@ in <os>.
const std::string kBase =
    "<domain type='kvm'><name>t</name><memory unit='MiB'>64</memory><vcpu>2</vcpu>"
    "<os><type>hvm</type><kernel>/k.elf</kernel>@OS@</os>@DOMAIN@<devices>@DEVICES@</devices></domain>";

std::string with(const std::string& slot, const std::string& text) {
  std::string xml = replace_all(kBase, "@" + slot + "@", text);
  for (const char* s : {"@OS@", "@DOMAIN@", "@DEVICES@"}) xml = replace_all(xml, s, "");
  return xml;
}
Bad device(std::string label, const std::string& xml, std::string at, std::string says) {
  return {std::move(label), with("DEVICES", xml), std::move(at), std::move(says)};
}
Bad domain(std::string label, const std::string& xml, std::string at, std::string says) {
  return {std::move(label), with("DOMAIN", xml), std::move(at), std::move(says)};
}
Bad os(std::string label, const std::string& xml, std::string at, std::string says) {
  return {std::move(label), with("OS", xml), std::move(at), std::move(says)};
}
std::string nvdimm(const std::string& path, const std::string& size_mib, const std::string& extra = "") {
  return "<memory model='nvdimm'><source><path>" + path + "</path></source><target><size unit='MiB'>" + size_mib +
         "</size></target>" + extra + "</memory>";
}
std::string disk(const std::string& file, const std::string& dev) {
  return "<disk type='file'><source file='" + file + "'/><target dev='" + dev + "' bus='virtio'/></disk>";
}
std::string repeat(int n, const std::function<std::string(int)>& make) {
  std::string out;
  for (int i = 0; i < n; ++i) out += make(i);
  return out;
}

std::vector<Bad> unsupported_device_classes() {
  const std::pair<const char*, const char*> classes[] = {
      {"<interface type='network'><source network='default'/></interface>", "network interfaces"},
      {"<graphics type='vnc' port='-1'/>", "graphical displays"},
      {"<video><model type='virtio'/></video>", "video adapters"},
      {"<sound model='ich9'/>", "sound devices"},
      {"<hostdev mode='subsystem' type='pci' managed='yes'/>", "host device assignment"},
      {"<redirdev bus='usb' type='spicevmc'/>", "USB redirection"},
      {"<hub type='usb'/>", "USB hubs"},
      {"<smartcard mode='host'/>", "smartcard"},
      {"<tpm model='tpm-crb'/>", "TPM"},
      {"<watchdog model='i6300esb'/>", "watchdog"},
      {"<rng model='virtio'/>", "random number generator"},
      {"<panic model='isa'/>", "panic"},
      {"<shmem name='s'/>", "shared memory"},
      {"<iommu model='intel'/>", "IOMMU"},
      {"<vsock model='virtio'/>", "vsock"},
      {"<filesystem type='mount'/>", "shared host filesystems"},
      {"<lease/>", "leases"},
      {"<parallel type='pty'/>", "parallel ports"},
      {"<channel type='unix'/>", "guest agents"},
      {"<crypto model='virtio'/>", "crypto"},
      {"<frobnicator/>", "<frobnicator> in <devices> is not supported by nvhv"},
  };
  std::vector<Bad> out;
  for (const auto& [xml, says] : classes) {
    std::string name = std::string(xml).substr(1, std::string(xml).find_first_of(" />") - 1);
    out.push_back(device("device_" + name, xml, "/domain/devices/" + name + "[1]", says));
  }
  return out;
}

std::vector<Bad> cases() {
  std::vector<Bad> c = unsupported_device_classes();
  const std::string ok_disk = disk("/d.img", "vda");
  const std::vector<Bad> more = {
      // Disks: only raw files on virtio.
      device("disk_ide", "<disk type='file'><source file='/a'/><target dev='hda' bus='ide'/></disk>", "/domain/devices/disk[1]/target/@bus", "only bus='virtio'"),
      device("disk_sata", "<disk type='file'><source file='/a'/><target dev='sda' bus='sata'/></disk>", "/domain/devices/disk[1]/target/@bus", "'sata' disks"),
      device("disk_scsi", "<disk type='file'><source file='/a'/><target dev='sda' bus='scsi'/></disk>", "/domain/devices/disk[1]/target/@bus", "'scsi' disks"),
      device("disk_usb", "<disk type='file'><source file='/a'/><target dev='sda' bus='usb'/></disk>", "/domain/devices/disk[1]/target/@bus", "'usb' disks"),
      device("disk_no_bus_hd", "<disk type='file'><source file='/a'/><target dev='hdb'/></disk>", "/domain/devices/disk[1]/target/@bus", "'hdb' disks"),
      device("disk_cdrom", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>", "/domain/devices/disk[1]/@device", "'cdrom' devices"),
      device("disk_floppy", "<disk type='file' device='floppy'><source file='/a'/><target dev='fda'/></disk>", "/domain/devices/disk[1]/@device", "'floppy'"),
      device("disk_lun", "<disk type='block' device='lun'><source dev='/dev/sda'/><target dev='sda' bus='scsi'/></disk>", "/domain/devices/disk[1]/@type", "'block' disks"),
      device("disk_network", "<disk type='network'><source protocol='nbd' name='x'><host name='h'/></source><target dev='vda' bus='virtio'/></disk>", "/domain/devices/disk[1]/@type", "'network' disks"),
      device("disk_volume", "<disk type='volume'><source pool='p' volume='v'/><target dev='vda' bus='virtio'/></disk>", "/domain/devices/disk[1]/@type", "'volume' disks"),
      device("disk_qcow2", "<disk type='file'><driver name='qemu' type='qcow2'/><source file='/a'/><target dev='vda' bus='virtio'/></disk>", "/domain/devices/disk[1]/driver/@type", "raw disk images only"),
      device("disk_cache", "<disk type='file'><driver name='qemu' type='raw' cache='none'/><source file='/a'/><target dev='vda'/></disk>", "/domain/devices/disk[1]/driver/@cache", "attribute 'cache' of <driver>"),
      device("disk_no_source", "<disk type='file'><target dev='vda' bus='virtio'/></disk>", "/domain/devices/disk[1]", "needs a <source>"),
      device("disk_boot_order", "<disk type='file'><source file='/a'/><target dev='vda'/><boot order='1'/></disk>", "/domain/devices/disk[1]/boot", "boot order"),
      device("disk_shareable", "<disk type='file'><source file='/a'/><target dev='vda'/><shareable/></disk>", "/domain/devices/disk[1]/shareable", "shareable"),
      device("disk_backing_file", "<disk type='file'><source file='/a'/><backingStore type='file'><source file='/b'/></backingStore><target dev='vda'/></disk>", "/domain/devices/disk[1]/backingStore", "backing files"),
      device("disk_same_target", ok_disk + disk("/e.img", "vda"), "/domain/devices/disk[2]/target/@dev", "already the target of /domain/devices/disk[1]"),
      device("disk_nine", repeat(9, [](int i) { return disk("/d" + std::to_string(i), "vd" + std::string(1, static_cast<char>('a' + i))); }), "/domain/devices/disk[9]", "at most 8 disks"),
      device("disk_empty_path", "<disk type='file'><source file=''/><target dev='vda'/></disk>", "/domain/devices/disk[1]/source/@file", "must not be empty"),
      // Memory devices: nvdimms only, without labels or read-only mode.
      device("memory_dimm", "<memory model='dimm'><target><size unit='MiB'>128</size></target></memory>", "/domain/devices/memory[1]/@model", "DIMM memory modules"),
      device("memory_virtio_pmem", "<memory model='virtio-pmem'><source><path>/p</path></source><target><size unit='MiB'>128</size></target></memory>", "/domain/devices/memory[1]/@model", "virtio-pmem"),
      device("memory_virtio_mem", "<memory model='virtio-mem'><target><size unit='MiB'>128</size></target></memory>", "/domain/devices/memory[1]/@model", "virtio-mem"),
      device("nvdimm_label", "<memory model='nvdimm'><source><path>/p</path></source><target><size unit='MiB'>128</size><label><size unit='KiB'>128</size></label></target></memory>", "/domain/devices/memory[1]/target/label", "label areas"),
      device("nvdimm_readonly", "<memory model='nvdimm'><source><path>/p</path></source><target><size unit='MiB'>128</size><readonly/></target></memory>", "/domain/devices/memory[1]/target/readonly", "read-only nvdimms"),
      device("nvdimm_private", "<memory model='nvdimm' access='private'><source><path>/p</path></source><target><size unit='MiB'>2</size></target></memory>", "/domain/devices/memory[1]/@access", "'private' is not supported"),
      device("nvdimm_node_1", "<memory model='nvdimm'><source><path>/p</path></source><target><size unit='MiB'>2</size><node>1</node></target></memory>", "/domain/devices/memory[1]/target/node", "one NUMA node"),
      device("nvdimm_alignsize_1g", "<memory model='nvdimm'><source><path>/p</path><alignsize unit='GiB'>1</alignsize></source><target><size unit='MiB'>2</size></target></memory>", "/domain/devices/memory[1]/source/alignsize", "up to 2 MiB"),
      device("nvdimm_pagesize", "<memory model='nvdimm'><source><path>/p</path><pagesize unit='KiB'>2048</pagesize></source><target><size unit='MiB'>2</size></target></memory>", "/domain/devices/memory[1]/source/pagesize", "page sizes"),
      device("nvdimm_no_path", "<memory model='nvdimm'><source/><target><size unit='MiB'>2</size></target></memory>", "/domain/devices/memory[1]/source", "needs a <path>"),
      device("nvdimm_odd_size", nvdimm("/p", "3"), "/domain/devices/memory[1]/target/size", "multiple of 2 MiB"),
      device("nvdimm_nine", repeat(9, [](int i) { return nvdimm("/p" + std::to_string(i), "2"); }), "/domain/devices/memory[9]", "at most 8 pmem regions"),
      device("nvdimm_two_ram", nvdimm("/r1", "64", "<alias name='ua-nvhv-ram'/>") + nvdimm("/r2", "64", "<alias name='ua-nvhv-ram'/>"), "/domain/devices/memory[2]", "already holds guest RAM"),
      device("nvdimm_and_disk_share_a_file", nvdimm("/shared", "2") + disk("/shared", "vda"), "/domain/devices/disk[1]", "already used by /domain/devices/memory[1]"),
      // Memory accounting (libvirt counts memory devices in <memory>).
      device("nvdimm_ram_wrong_size", nvdimm("/r", "16", "<alias name='ua-nvhv-ram'/>"), "/domain/devices/memory[1]/target/size", "must be equal"),
      device("nvdimms_exceed_memory", nvdimm("/p", "64"), "/domain/memory", "leaves no guest RAM"),
      // Serial port and consoles.
      device("serial_tcp", "<serial type='tcp'><source mode='connect' host='127.0.0.1' service='2445'/></serial>", "/domain/devices/serial[1]/@type", "only pty, stdio, file and null"),
      device("serial_unix", "<serial type='unix'><source mode='bind' path='/s'/></serial>", "/domain/devices/serial[1]/@type", "'unix'"),
      device("serial_port_1", "<serial type='pty'><target port='1'/></serial>", "/domain/devices/serial[1]/target/@port", "one serial port"),
      device("serial_usb", "<serial type='pty'><target type='usb-serial' port='0'/></serial>", "/domain/devices/serial[1]/target/@type", "ISA bus"),
      device("serial_two", "<serial type='pty'/><serial type='stdio'/>", "/domain/devices/serial[2]", "one serial port"),
      device("serial_file_without_path", "<serial type='file'/>", "/domain/devices/serial[1]", "needs <source path"),
      device("serial_log", "<serial type='pty'><log file='/var/log/x.log'/></serial>", "/domain/devices/serial[1]/log", "log files"),
      device("serial_file_truncate", "<serial type='file'><source path='/s.log' append='off'/></serial>", "/domain/devices/serial[1]/source/@append", "always appends"),
      device("console_disagrees_with_serial", "<serial type='file'><source path='/a.log'/></serial><console type='pty'/>", "/domain/devices/console[1]", "different outputs"),
      device("console_virtio_pty", "<console type='pty'><target type='virtio'/></console>", "/domain/devices/console[1]/@type", "writes to a file only"),
      device("console_two_virtio", "<console type='null'><target type='virtio'/></console><console type='null'><target type='virtio'/></console>", "/domain/devices/console[2]", "one virtio console"),
      device("console_sclp", "<console type='pty'><target type='sclp'/></console>", "/domain/devices/console[1]/target/@type", "COM1 (serial) and one virtio console"),
      // Controllers, inputs, balloons, audio.
      device("usb_controller_ehci", "<controller type='usb' index='0' model='ich9-ehci1'/>", "/domain/devices/controller[1]/@model", "no USB"),
      device("usb_controller_second", "<controller type='usb' index='1'/>", "/domain/devices/controller[1]/@index", "second USB controller"),
      device("scsi_controller", "<controller type='scsi' index='0' model='virtio-scsi'/>", "/domain/devices/controller[1]/@type", "scsi controllers"),
      device("pci_bridge", "<controller type='pci' index='1' model='pci-bridge'/>", "/domain/devices/controller[1]/@model", "bridges"),
      device("input_tablet", "<input type='tablet' bus='usb'/>", "/domain/devices/input[1]/@type", "input devices"),
      device("input_virtio_keyboard", "<input type='keyboard' bus='virtio'/>", "/domain/devices/input[1]/@bus", "PS/2"),
      device("memballoon_virtio", "<memballoon model='virtio'/>", "/domain/devices/memballoon[1]/@model", "balloons"),
      device("audio_pulseaudio", "<audio id='1' type='pulseaudio'/>", "/domain/devices/audio[1]/@type", "audio backends"),
      // Domain level.
      domain("hugepages", "<memoryBacking><hugepages/></memoryBacking>", "/domain/memoryBacking", "memory backing options"),
      domain("numatune", "<numatune><memory mode='strict' nodeset='0'/></numatune>", "/domain/numatune", "NUMA placement"),
      domain("numa_two_cells", "<cpu><numa><cell id='0' cpus='0' memory='32' unit='MiB'/><cell id='1' cpus='1' memory='32' unit='MiB'/></numa></cpu>", "/domain/cpu/numa/cell[2]", "one NUMA node"),
      domain("numa_cell_memory_mismatch", "<cpu><numa><cell id='0' cpus='0-1' memory='32' unit='MiB'/></numa></cpu>", "/domain/cpu/numa/cell/@memory", "libvirt requires them to agree"),
      domain("numa_cell_missing_cpu", "<cpu><numa><cell id='0' cpus='0' memory='64' unit='MiB'/></numa></cpu>", "/domain/cpu/numa/cell/@cpus", "cpus must be 0-1"),
      domain("numa_distances", "<cpu><numa><cell id='0' cpus='0-1' memory='64' unit='MiB'><distances><sibling id='0' value='10'/></distances></cell></numa></cpu>", "/domain/cpu/numa/cell/distances", "NUMA distances"),
      domain("cpu_model", "<cpu mode='custom' match='exact'><model fallback='forbid'>Skylake-Client</model></cpu>", "/domain/cpu/@match", "attribute 'match'"),
      domain("cpu_model_element", "<cpu><model>Skylake-Client</model></cpu>", "/domain/cpu/model", "CPU models and features"),
      domain("cpu_feature", "<cpu mode='host-passthrough'><feature policy='disable' name='lahf_lm'/></cpu>", "/domain/cpu/feature", "CPU models and features"),
      domain("cpu_host_model", "<cpu mode='host-model'/>", "/domain/cpu/@mode", "'host-model'"),
      domain("cpu_two_sockets", "<cpu><topology sockets='2' cores='1' threads='1'/></cpu>", "/domain/cpu/topology/@sockets", "sockets must be 1"),
      domain("cpu_threads", "<cpu><topology sockets='1' cores='1' threads='2'/></cpu>", "/domain/cpu/topology/@threads", "threads must be 1"),
      domain("cpu_cores_mismatch", "<cpu><topology sockets='1' cores='4' threads='1'/></cpu>", "/domain/cpu/topology/@cores", "<vcpu> is 2"),
      domain("cputune", "<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>", "/domain/cputune", "pinning"),
      domain("iothreads", "<iothreads>2</iothreads>", "/domain/iothreads", "I/O threads"),
      domain("memtune", "<memtune><hard_limit unit='G'>1</hard_limit></memtune>", "/domain/memtune", "cgroup"),
      domain("blkiotune", "<blkiotune><weight>800</weight></blkiotune>", "/domain/blkiotune", "cgroup"),
      domain("genid", "<genid/>", "/domain/genid", "generation IDs"),
      domain("vcpus", "<vcpus><vcpu id='0' enabled='yes'/></vcpus>", "/domain/vcpus", "hotplug"),
      domain("sysinfo", "<sysinfo type='smbios'/>", "/domain/sysinfo", "SMBIOS"),
      domain("launch_security", "<launchSecurity type='sev'/>", "/domain/launchSecurity", "confidential"),
      domain("perf", "<perf><event name='cmt' enabled='yes'/></perf>", "/domain/perf", "performance monitoring"),
      domain("idmap", "<idmap><uid start='0' target='1000' count='10'/></idmap>", "/domain/idmap", "containers"),
      domain("bootloader", "<bootloader>/usr/bin/pygrub</bootloader>", "/domain/bootloader", "host bootloaders"),
      domain("clock_localtime", "<clock offset='localtime'/>", "/domain/clock/@offset", "UTC"),
      domain("clock_rtc_catchup", "<clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>", "/domain/clock/timer", "timer 'rtc'"),
      domain("clock_hpet", "<clock offset='utc'><timer name='hpet' present='yes'/></clock>", "/domain/clock/timer", "no HPET"),
      domain("on_reboot_preserve", "<on_reboot>preserve</on_reboot>", "/domain/on_reboot", "only destroy or restart"),
      domain("on_poweroff_restart", "<on_poweroff>restart</on_poweroff>", "/domain/on_poweroff", "only destroy"),
      domain("on_crash_coredump", "<on_crash>coredump-restart</on_crash>", "/domain/on_crash", "only destroy"),
      domain("on_lockfailure", "<on_lockfailure>poweroff</on_lockfailure>", "/domain/on_lockfailure", "lock managers"),
      domain("feature_hyperv", "<features><hyperv mode='passthrough'/></features>", "/domain/features/hyperv", "hypervisor feature <hyperv>"),
      domain("feature_smm_on", "<features><smm state='on'/></features>", "/domain/features/smm", "no smm"),
      domain("feature_pmu_default", "<features><pmu/></features>", "/domain/features/pmu", "no pmu"),
      domain("feature_split_ioapic", "<features><ioapic driver='qemu'/></features>", "/domain/features/ioapic/@driver", "in-kernel"),
      domain("pm_suspend", "<pm><suspend-to-mem enabled='yes'/></pm>", "/domain/pm/suspend-to-mem/@enabled", "sleep states"),
      domain("seclabel_dynamic", "<seclabel type='dynamic' model='selinux' relabel='yes'/>", "/domain/seclabel/@type", "security driver"),
      domain("qemu_commandline", "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-s'/></qemu:commandline>", "/domain/qemu:commandline", "QEMU command-line passthrough"),
      domain("unknown_element", "<frobnicate/>", "/domain/frobnicate", "<frobnicate> in <domain> is not supported by nvhv"),
      domain("current_memory_differs", "<currentMemory unit='MiB'>32</currentMemory>", "/domain/currentMemory", "no balloon"),
      domain("second_name", "<name>u</name>", "/domain/name[2]", "only once"),
      domain("second_devices", "<devices/>", "/domain/devices[2]", "only once"),
      // <os>: direct kernel boot only.
      os("loader", "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>", "/domain/os/loader", "no firmware"),
      os("nvram", "<nvram>/var/lib/libvirt/nvram/guest_VARS.fd</nvram>", "/domain/os/nvram", "no firmware"),
      os("dtb", "<dtb>/root/ppc.dtb</dtb>", "/domain/os/dtb", "device trees"),
      os("acpi_table", "<acpi><table type='slic'>/path/to/slic.dat</table></acpi>", "/domain/os/acpi", "ACPI tables"),
      os("bootmenu", "<bootmenu enable='yes'/>", "/domain/os/bootmenu", "boot menu"),
      os("init", "<init>/bin/systemd</init>", "/domain/os/init", "container boot"),
      os("cmdline_too_long", "<cmdline>" + std::string(5000, 'x') + "</cmdline>", "/domain/os/cmdline", "longer than 4095 bytes"),
      os("second_kernel", "<kernel>/k2</kernel>", "/domain/os/kernel[2]", "only once"),
  };
  c.insert(c.end(), more.begin(), more.end());
  auto whole = [&](std::string label, std::string xml, std::string at, std::string says) {
    c.push_back({std::move(label), std::move(xml), std::move(at), std::move(says)});
  };
  const std::string os_ok = "<os><type>hvm</type><kernel>/k</kernel></os>";
  whole("domain_type_qemu", "<domain type='qemu'><name>t</name></domain>", "/domain/@type", "KVM only");
  whole("domain_type_missing", "<domain><name>t</name></domain>", "/domain", "needs the attribute 'type'");
  whole("domain_unknown_attribute", "<domain type='kvm' frob='1'/>", "/domain/@frob", "attribute 'frob' of <domain>");
  whole("no_name", "<domain type='kvm'><memory>65536</memory>" + os_ok + "</domain>", "/domain", "needs a <name>");
  whole("bad_name", "<domain type='kvm'><name>my vm</name><memory>65536</memory>" + os_ok + "</domain>", "/domain/name", "nvhv names");
  whole("no_memory", "<domain type='kvm'><name>t</name>" + os_ok + "</domain>", "/domain", "needs a <memory>");
  whole("no_os", "<domain type='kvm'><name>t</name><memory>65536</memory></domain>", "/domain", "needs <os><kernel>");
  whole("no_kernel", "<domain type='kvm'><name>t</name><memory>65536</memory><os><type>hvm</type><boot dev='hd'/></os></domain>", "/domain/os", "needs a <kernel>");
  whole("empty_kernel", "<domain type='kvm'><os><type>hvm</type><kernel> </kernel></os></domain>", "/domain/os/kernel", "must not be empty");
  whole("os_firmware_efi", "<domain type='kvm'><os firmware='efi'><type>hvm</type></os></domain>", "/domain/os/@firmware", "no firmware");
  whole("os_arch_i686", "<domain type='kvm'><os><type arch='i686'>hvm</type></os></domain>", "/domain/os/type/@arch", "x86_64 guests only");
  whole("os_type_xen", "<domain type='kvm'><os><type>linux</type></os></domain>", "/domain/os/type", "(hvm)");
  whole("vcpu_zero", "<domain type='kvm'><vcpu>0</vcpu></domain>", "/domain/vcpu", "between 1 and 254");
  whole("vcpu_too_many", "<domain type='kvm'><vcpu>255</vcpu></domain>", "/domain/vcpu", "larger than 254");
  whole("vcpu_words", "<domain type='kvm'><vcpu>two</vcpu></domain>", "/domain/vcpu", "expected a whole number, got \"two\"");
  whole("vcpu_negative", "<domain type='kvm'><vcpu>-1</vcpu></domain>", "/domain/vcpu", "expected a whole number");
  whole("vcpu_cpuset", "<domain type='kvm'><vcpu cpuset='1-4,^3'>2</vcpu></domain>", "/domain/vcpu/@cpuset", "pinning");
  whole("vcpu_current", "<domain type='kvm'><vcpu current='1'>2</vcpu></domain>", "/domain/vcpu/@current", "hotplug");
  whole("vcpu_placement_auto", "<domain type='kvm'><vcpu placement='auto'>2</vcpu></domain>", "/domain/vcpu/@placement", "numad");
  whole("memory_unknown_unit", "<domain type='kvm'><memory unit='parsecs'>1</memory></domain>", "/domain/memory/@unit", "unknown unit 'parsecs'");
  whole("memory_not_a_number", "<domain type='kvm'><memory unit='MiB'>1.5</memory></domain>", "/domain/memory", "expected a whole number");
  whole("memory_overflow", "<domain type='kvm'><memory unit='EiB'>100</memory></domain>", "/domain/memory", "does not fit in 64 bits");
  whole("memory_huge_number", "<domain type='kvm'><memory>99999999999999999999999</memory></domain>", "/domain/memory", "larger than");
  whole("memory_not_whole_mib", "<domain type='kvm'><name>t</name><memory unit='KiB'>65537</memory>" + os_ok + "</domain>", "/domain/memory", "not a positive multiple of 1 MiB");
  whole("memory_too_large", "<domain type='kvm'><name>t</name><memory unit='TiB'>2</memory>" + os_ok + "</domain>", "/domain/memory", "more than nvhv's 1048576 MiB");
  whole("memory_decimal_units_not_mib", "<domain type='kvm'><name>t</name><memory unit='MB'>100</memory>" + os_ok + "</domain>", "/domain/memory", "100000000 bytes");
  whole("metadata_is_fine_but_text_is_not", "<domain type='kvm'>stray text<name>t</name></domain>", "/domain", "unexpected text \"stray text\"");
  whole("element_in_name", "<domain type='kvm'><name><b/></name></domain>", "/domain/name", "holds text");
  // Malformed XML and wrong documents.
  whole("not_xml", "this is not XML", "not well-formed XML", "");
  whole("empty", "", "not well-formed XML", "");
  whole("unclosed", "<domain type='kvm'>\n  <name>t</name>\n", "not well-formed XML: line 2, column 17", "tags mismatch");
  whole("mismatched_tag", "<domain type='kvm'>\n<name>t</nom>\n</domain>", "not well-formed XML: line 2, column 10", "tags mismatch");
  whole("bad_attribute_quote", "<domain type='kvm><name>t</name></domain>", "not well-formed XML", "");
  whole("two_roots", "<domain type='kvm'/><domain type='kvm'/>", "not well-formed XML", "one root element");
  whole("nul_byte", std::string("<domain type='kvm'>") + '\0' + "</domain>", "not XML", "NUL byte");
  whole("invalid_utf8", "<domain type='kvm'>\n<name>t\xf7</name></domain>", "not XML in UTF-8", "invalid byte 0xf7 at line 2, column 8");
  whole("overlong_utf8", "<domain type='kvm'><name>\xc0\xaf</name></domain>", "not XML in UTF-8", "0xc0");
  whole("surrogate_reference", "<domain type='kvm'><name>&#xD800;</name></domain>", "not well-formed XML: line 1, column 26", "character reference");
  whole("nul_reference", "<domain type='kvm'>\n<os><cmdline>a&#0;b</cmdline></os></domain>", "not well-formed XML: line 2, column 15", "character reference");
  whole("unterminated_reference", "<domain type='kvm'><name>&#x41</name></domain>", "not well-formed XML: line 1, column 26", "character reference");
  whole("wrong_root", "<network><name>default</name></network>", "/network", "expected a libvirt <domain>");
  return c;
}

void PrintTo(const Bad& bad, std::ostream* os) { *os << bad.label; }

class LibvirtImportRefuses : public ::testing::TestWithParam<Bad> {};

TEST_P(LibvirtImportRefuses, NamingTheElement) {
  const Bad& bad = GetParam();
  std::string err;
  try {
    import_libvirt_domain(bad.xml, "/base");
    FAIL() << "accepted:\n" << bad.xml;
  } catch (const ConfigError& e) {
    err = e.what();
  }
  EXPECT_EQ(err.rfind(bad.at + ":", 0), 0u) << "expected the error at " << bad.at << ", got: " << err;
  EXPECT_NE(err.find(bad.says), std::string::npos) << err;

  // The command: exit status 2, nothing on stdout, the same message on stderr after the file.
  TempDir dir;
  write_text(dir.file("domain.xml"), bad.xml);
  auto r = run_import(dir.file("domain.xml"));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "nvhv: error: " + dir.file("domain.xml") + ": " + err + "\n");
}

INSTANTIATE_TEST_SUITE_P(Cases, LibvirtImportRefuses, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.label; });

}  // namespace
}  // namespace nvhv::test
