// `nvhv import-libvirt` on domain XML modelled on libvirt's documented examples
// (tests/data/libvirt/): each maps to the guest.json beside it, which nvhv's own config loader
// accepts; the full-featured example is refused one unsupported element at a time.
#include "vmm/libvirt_import.hpp"

#include <pugixml.hpp>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "tests/unit/libvirt_import_support.hpp"
#include "vmm/base/error.hpp"
#include "vmm/config.hpp"

namespace nvhv::test {
namespace {

using nlohmann::json;

json expected_guest(const std::string& name) {
  return json::parse(replace_all(read_text(libvirt_fixture_dir() + "/" + name + ".json"), "@DIR@", libvirt_fixture_dir()));
}

class LibvirtExample : public ::testing::TestWithParam<const char*> {};

TEST_P(LibvirtExample, MapsToTheExpectedGuestJson) {
  const std::string name = GetParam();
  auto imported = import_libvirt_domain(read_text(libvirt_fixture_dir() + "/" + name + ".xml"), libvirt_fixture_dir());
  json guest = json::parse(imported.dump());
  json expected = expected_guest(name);
  EXPECT_EQ(guest, expected) << guest.dump(2);
  // Printed in docs/config.md's order, which is also the fixtures' order.
  const std::string fixture = replace_all(read_text(libvirt_fixture_dir() + "/" + name + ".json"), "@DIR@", libvirt_fixture_dir());
  EXPECT_EQ(imported.dump(), nlohmann::ordered_json::parse(fixture).dump());

  // nvhv reads it the way `nvhv run` does, from a file somewhere else: paths are absolute.
  TempDir dir;
  write_text(dir.file("guest.json"), guest.dump(2));
  GuestConfig cfg = load_config(dir.file("guest.json"), 254);
  EXPECT_EQ(cfg.name, expected["name"]);
  EXPECT_EQ(cfg.vcpus, expected["vcpus"]);
  EXPECT_EQ(cfg.memory.size_mib, expected["memory"]["size_mib"]);
  EXPECT_EQ(cfg.memory.backing.has_value(), expected["memory"].contains("backing"));
  EXPECT_EQ(cfg.kernel, expected["kernel"].get<std::string>());
  EXPECT_EQ(cfg.pmem.size(), expected.value("pmem", json::array()).size());
  EXPECT_EQ(cfg.disks.size(), expected.value("disks", json::array()).size());
  EXPECT_EQ(cfg.console.has_value(), expected.contains("console"));
}

TEST_P(LibvirtExample, TheCommandPrintsTheSameGuestJson) {
  auto r = run_import(libvirt_fixture_dir() + "/" + GetParam() + ".xml");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(json::parse(r.out), expected_guest(GetParam())) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LibvirtExample,
                         ::testing::Values("direct-kernel-boot", "nvdimm", "virtio-disks", "consoles", "harmless"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(LibvirtImport, ReadsStandardInputWithPathsRelativeToTheWorkingDirectory) {
  std::string xml = replace_all(read_text(libvirt_fixture_dir() + "/virtio-disks.xml"), "images/data.img", "rel/data.img");
  auto r = run_import("-", xml);
  ASSERT_EQ(r.status, 0) << r.err;
  json guest = json::parse(r.out);
  EXPECT_EQ(guest["disks"][1]["path"], (std::filesystem::current_path() / "rel/data.img").string());
}

TEST(LibvirtImport, UsageAndUnreadableFilesExitWith2) {
  auto missing = run_import("/nonexistent/domain.xml");
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err, "nvhv: error: /nonexistent/domain.xml: cannot open: No such file or directory\n");
  auto directory = run_import(libvirt_fixture_dir());
  EXPECT_EQ(directory.status, 2);
  EXPECT_EQ(directory.err, "nvhv: error: " + libvirt_fixture_dir() + ": is a directory, not a domain XML file\n");
  auto usage = run_command({nvhv_binary(), "import-libvirt"}, std::chrono::seconds(10));
  EXPECT_EQ(usage.status, 2);
  EXPECT_EQ(usage.out, "");
  auto help = run_command({nvhv_binary(), "import-libvirt", "--help"}, std::chrono::seconds(10));
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("libvirt domain XML"), std::string::npos) << help.out;
}

// Each step: where the error must point, and what to delete from the document before the next
// try (an element, or the attribute itself).
struct Refusal {
  const char* at;
  const char* says;
  const char* remove;
};

const Refusal kFullFeaturedRefusals[] = {
    {"/domain/genid", "generation IDs", "/domain/genid"},
    {"/domain/memoryBacking", "ua-nvhv-ram", "/domain/memoryBacking"},
    {"/domain/memtune", "cgroup", "/domain/memtune"},
    {"/domain/iothreads", "I/O threads", "/domain/iothreads"},
    {"/domain/cputune", "pinning", "/domain/cputune"},
    {"/domain/numatune", "NUMA placement", "/domain/numatune"},
    {"/domain/resource", "resource partitions", "/domain/resource"},
    {"/domain/sysinfo", "SMBIOS", "/domain/sysinfo"},
    {"/domain/os/loader", "no firmware", "/domain/os/loader"},
    {"/domain/os/smbios", "SMBIOS", "/domain/os/smbios"},
    {"/domain/features/hyperv", "hypervisor feature <hyperv>", "/domain/features/hyperv"},
    {"/domain/features/kvm", "hypervisor feature <kvm>", "/domain/features/kvm"},
    {"/domain/features/smm", "no smm", "/domain/features/smm"},
    {"/domain/cpu/@mode", "host-passthrough", "/domain/cpu/@mode"},
    {"/domain/cpu/feature", "CPU models and features", "/domain/cpu/feature"},
    {"/domain/clock/@offset", "UTC", "/domain/clock/@offset"},
    {"/domain/clock/timer[1]", "timer 'rtc'", "/domain/clock/timer[1]"},
    {"/domain/clock/timer[1]", "timer 'pit'", "/domain/clock/timer[1]"},
    {"/domain/on_lockfailure", "lock managers", "/domain/on_lockfailure"},
    {"/domain/devices/disk[2]/@device", "'cdrom'", "/domain/devices/disk[2]"},
    {"/domain/devices/disk[2]/@type", "'network' disks", "/domain/devices/disk[2]"},
    {"/domain/devices/controller[5]/@type", "scsi controllers", "/domain/devices/controller[5]"},
    {"/domain/devices/interface[1]", "network interfaces are not supported by nvhv", "/domain/devices/interface[1]"},
    {"/domain/devices/channel[1]", "channels", "/domain/devices/channel[1]"},
    {"/domain/devices/input[1]/@type", "input devices", "/domain/devices/input[1]"},
    {"/domain/devices/graphics[1]", "graphical displays", "/domain/devices/graphics[1]"},
    {"/domain/devices/sound[1]", "sound devices", "/domain/devices/sound[1]"},
    {"/domain/devices/video[1]", "video adapters", "/domain/devices/video[1]"},
    {"/domain/devices/hostdev[1]", "host device assignment", "/domain/devices/hostdev[1]"},
    {"/domain/devices/watchdog[1]", "watchdog", "/domain/devices/watchdog[1]"},
    {"/domain/devices/memballoon[1]/@model", "balloons", "/domain/devices/memballoon[1]"},
    {"/domain/devices/rng[1]", "random number", "/domain/devices/rng[1]"},
    {"/domain/devices/tpm[1]", "TPM", "/domain/devices/tpm[1]"},
    {"/domain/devices/panic[1]", "panic", "/domain/devices/panic[1]"},
    {"/domain/devices/memory[2]/target/label", "label areas", "/domain/devices/memory[2]/target/label"},
    {"/domain/seclabel/@type", "security driver", "/domain/seclabel"},
    {"/domain/qemu:commandline", "QEMU command-line passthrough", "/domain/qemu:commandline"},
};

std::string import_error(const pugi::xml_document& doc) {
  std::ostringstream xml;
  doc.save(xml);
  try {
    import_libvirt_domain(xml.str(), "/");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(LibvirtImport, FullFeaturedExampleIsRefusedOneUnsupportedElementAtATime) {
  const std::string file = libvirt_fixture_dir() + "/full-featured.xml";
  // The command names the first one, on stderr, and prints nothing.
  auto r = run_import(file);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "nvhv: error: " + file + ": /domain/genid: VM generation IDs are not supported by nvhv\n");

  pugi::xml_document doc;
  ASSERT_TRUE(doc.load_string(read_text(file).c_str()));
  for (const Refusal& step : kFullFeaturedRefusals) {
    std::string err = import_error(doc);
    ASSERT_EQ(err.rfind(std::string(step.at) + ": ", 0), 0u) << "expected an error at " << step.at << ", got: " << err;
    EXPECT_NE(err.find(step.says), std::string::npos) << err;
    pugi::xpath_node node = doc.select_node(step.remove);
    ASSERT_TRUE(node) << step.remove;
    if (node.attribute())
      node.parent().remove_attribute(node.attribute());
    else
      node.node().parent().remove_child(node.node());
  }
  std::ostringstream rest;
  doc.save(rest);
  EXPECT_EQ(json::parse(import_libvirt_domain(rest.str(), "/").dump()), expected_guest("full-featured"));
}

}  // namespace
}  // namespace nvhv::test
