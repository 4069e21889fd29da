// Boots testos under build/bin/nvhv and checks the serial contract (docs/testos.md).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>

#include "tests/integration/nvhv_support.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;

struct BootCase {
  const char* label;
  int vcpus;
  bool file_backed;
};

class NvhvBoot : public ::testing::TestWithParam<BootCase> {};

TEST_P(NvhvBoot, TicksToPowerOff) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("boot", GetParam().vcpus, 128, "ticks=8 tick_ms=20 mem_mib=16");
  if (GetParam().file_backed) cfg["memory"]["backing"] = dir.file("ram.img");
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  auto status = vm.wait(60s);
  ASSERT_TRUE(status) << "nvhv did not exit\n" << vm.describe();
  EXPECT_EQ(*status, 0) << vm.describe();
  auto s = summarize(vm.stdout_lines());
  EXPECT_EQ(s.boots, 1) << vm.describe();
  EXPECT_EQ(s.corrupt, 0) << vm.describe();
  EXPECT_EQ(s.ticks.size(), 8u) << vm.describe();
  EXPECT_TRUE(consecutive(s.ticks, 1)) << vm.describe();
  if (GetParam().file_backed) {
    struct stat st {};
    ASSERT_EQ(stat(dir.file("ram.img").c_str(), &st), 0);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), 128ull << 20);
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, NvhvBoot,
                         ::testing::Values(BootCase{"one_vcpu_anonymous", 1, false}, BootCase{"two_vcpus_anonymous", 2, false},
                                           BootCase{"one_vcpu_file", 1, true}, BootCase{"two_vcpus_file", 2, true}),
                         [](const auto& case_info) { return std::string(case_info.param.label); });

TEST(NvhvRun, SigtermStopsCleanly) {
  skip_without_kvm();
  TempDir dir;
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, testos_config("term", 2, 64, "tick_ms=10 mem_mib=8"))});
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick 3 ok$"), 30s)) << vm.describe();
  vm.signal(SIGTERM);
  auto status = vm.wait(10s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 0) << vm.describe();
  EXPECT_EQ(summarize(vm.stdout_lines()).corrupt, 0);
}

TEST(NvhvRun, SerialToFile) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("file", 1, 64, "ticks=3 tick_ms=10 mem_mib=4");
  cfg["serial"] = {{"output", "serial.log"}};  // relative to the config file
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  auto status = vm.wait(30s);
  ASSERT_TRUE(status && *status == 0) << vm.describe();
  std::ifstream log(dir.file("serial.log"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(log, l);) lines.push_back(l);
  auto s = summarize(lines);
  EXPECT_EQ(s.boots, 1);
  EXPECT_TRUE(consecutive(s.ticks, 1) && s.ticks.size() == 3u);
}

TEST(NvhvRun, PmemRegionIsCreatedAndMapped) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("pmem", 1, 64, "ticks=2 tick_ms=10 mem_mib=4");
  cfg["pmem"] = nlohmann::json::array({{{"path", "store.img"}, {"size_mib", 16}}});
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  auto status = vm.wait(30s);
  ASSERT_TRUE(status && *status == 0) << vm.describe();
  struct stat st {};
  ASSERT_EQ(stat(dir.file("store.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16 << 20);
  bool logged = false;
  for (const auto& l : vm.stderr_lines()) logged |= l.find("E820 type 12") != std::string::npos && l.find("0x100000000") != std::string::npos;
  EXPECT_TRUE(logged) << vm.describe();
}

TEST(NvhvRun, ConfigErrorsExitWithStatus2AndNameTheField) {
  TempDir dir;
  auto cfg = testos_config("bad", 1, 64, "");
  cfg["memory"]["size_mib"] = "lots";
  auto r = run_command({nvhv_bin(), "run", write_config(dir, cfg)}, 10s);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("/memory/size_mib"), std::string::npos) << r.err;
  auto missing = run_command({nvhv_bin(), "run", dir.file("nope.json")}, 10s);
  EXPECT_EQ(missing.status, 2) << missing.err;
  auto usage = run_command({nvhv_bin(), "run"}, 10s);
  EXPECT_EQ(usage.status, 2);
  auto help = run_command({nvhv_bin(), "--help"}, 10s);
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("run"), std::string::npos);
}

TEST(NvhvRun, BadKernelIsAnErrorNotACrash) {
  skip_without_kvm();
  TempDir dir;
  std::ofstream(dir.file("junk.elf")) << "not an elf at all";
  auto cfg = testos_config("junk", 1, 64, "");
  cfg["kernel"] = dir.file("junk.elf");
  auto r = run_command({nvhv_bin(), "run", write_config(dir, cfg)}, 10s);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("junk.elf"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace nvhv::test
