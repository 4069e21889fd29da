// `nvhv import-libvirt` end to end: a libvirt domain describing testos, with guest RAM in a
// file-backed nvdimm, a pmem nvdimm, a read-only virtio disk and a virtio console log, is
// imported by the real binary; `nvhv run` boots the result on KVM, a power failure checkpoints
// it, and the same guest.json resumes it with the ticks continuing.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "tests/integration/checkpoint_support.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string domain_xml_for(const TempDir& dir) {
  std::ifstream in(source_dir() + "/tests/data/libvirt/testos.xml.in");
  std::stringstream s;
  s << in.rdbuf();
  std::string xml = s.str();
  for (auto [from, to] : {std::pair<std::string, std::string>{"@TESTOS@", testos_elf()}, {"@DIR@", dir.path()}})
    for (size_t at = xml.find(from); at != std::string::npos; at = xml.find(from, at)) xml.replace(at, from.size(), to);
  return xml;
}

off_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

TEST(LibvirtImportRun, ImportedTestosBootsAndSurvivesAPowerFailure) {
  skip_without_kvm();
  TempDir dir;
  std::ofstream(dir.file("domain.xml")) << domain_xml_for(dir);
  std::ofstream(dir.file("data.img")).put('\0');
  ASSERT_EQ(truncate(dir.file("data.img").c_str(), 1 << 20), 0);

  auto imported = run_command({nvhv_bin(), "import-libvirt", dir.file("domain.xml")}, 20s);
  ASSERT_EQ(imported.status, 0) << imported.err;
  json guest = json::parse(imported.out);
  EXPECT_EQ(guest["memory"], json({{"size_mib", 64}, {"backing", dir.file("testos.ram")}}));
  EXPECT_EQ(guest["pmem"], json::parse(R"([{"path": ")" + dir.file("store.pmem") + R"(", "size_mib": 16}])"));
  EXPECT_EQ(guest["disks"], json::parse(R"([{"path": ")" + dir.file("data.img") + R"(", "readonly": true}])"));
  EXPECT_EQ(guest["console"], json({{"log", dir.file("hvc0.log")}}));
  EXPECT_EQ(guest["vcpus"], 2);
  std::ofstream(dir.file("guest.json")) << imported.out;

  Transcript transcript;
  {
    ChildProcess vm({nvhv_bin(), "run", dir.file("guest.json")});
    ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick 5 ok$"), 30s)) << vm.describe();
    vm.signal(SIGPWR);
    auto status = vm.wait(30s);
    ASSERT_TRUE(status) << vm.describe();
    ASSERT_EQ(*status, 0) << vm.describe();
    transcript.add_run(vm, false);
  }
  EXPECT_GE(file_size(dir.file("testos.ram")), 64 << 20);
  EXPECT_EQ(file_size(dir.file("store.pmem")), 16 << 20);
  EXPECT_EQ(file_size(dir.file("data.img")), 1 << 20);
  const long ticks_before = transcript.last_tick();

  {
    ChildProcess vm({nvhv_bin(), "run", dir.file("guest.json")});
    const std::string next = "^testos: tick " + std::to_string(ticks_before + 3) + " ok$";
    ASSERT_TRUE(vm.wait_stdout(std::regex(next), 30s)) << vm.describe();
    vm.signal(SIGTERM);
    auto status = vm.wait(30s);
    ASSERT_TRUE(status && *status == 0) << vm.describe();
    transcript.add_run(vm, true);
  }
  EXPECT_EQ(transcript.boots(), 1) << "the imported guest booted again instead of resuming";
  EXPECT_EQ(transcript.check(), "");
  EXPECT_GE(transcript.last_tick(), ticks_before + 3);
}

}  // namespace
}  // namespace nvhv::test
