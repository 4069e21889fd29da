// Guest resets under "on_reset" (docs/config.md): testos's reset_after=N pulses the i8042 reset
// line after tick N; nvhv then exits, or reboots by re-executing itself in the same process.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "tests/integration/nvhv_support.hpp"
#include "vmm/machine.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;

std::string proc_cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  for (auto& c : s)
    if (c == '\0') c = ' ';
  return s;
}

bool has_line(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

TEST(NvhvReset, ExitIsTheDefault) {
  skip_without_kvm();
  TempDir dir;
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, testos_config("reset-exit", 1, 64, "reset_after=3 tick_ms=10 mem_mib=4"))});
  auto status = vm.wait(60s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 0) << vm.describe();
  auto s = summarize(vm.stdout_lines());
  EXPECT_EQ(s.boots, 1) << vm.describe();
  EXPECT_TRUE(s.ticks.size() == 3u && consecutive(s.ticks, 1)) << vm.describe();
  EXPECT_TRUE(has_line(vm.stderr_lines(), "stopped: guest reset (exit status 0)")) << vm.describe();
}

class NvhvReboot : public ::testing::TestWithParam<bool> {};

TEST_P(NvhvReboot, BootsAgainInTheSameProcess) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("reset-reboot", 2, 64, "reset_after=25 tick_ms=10 mem_mib=4");
  cfg["on_reset"] = "reboot";
  cfg["api"] = {{"socket", dir.file("api.sock")}};
  if (GetParam()) cfg["memory"]["backing"] = dir.file("ram.img");
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  const pid_t pid = vm.pid();
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: reset$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stderr(std::regex("nvhv: guest reset: rebooting \\(cold boot\\)$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: boot$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick 1 ok$"), 30s)) << vm.describe();
  // The same process, now a cold boot; the new image re-created the API socket.
  EXPECT_EQ(vm.pid(), pid);
  EXPECT_NE(proc_cmdline(pid).find(" --cold"), std::string::npos) << proc_cmdline(pid);
  EXPECT_EQ(access(dir.file("api.sock").c_str(), F_OK), 0);
  vm.signal(SIGTERM);
  auto status = vm.wait(30s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 0) << vm.describe();
  auto s = summarize(vm.stdout_lines());
  EXPECT_GE(s.boots, 2) << vm.describe();
  EXPECT_EQ(s.corrupt, 0) << vm.describe();
  // Ticks start again at 1 after each reset.
  ASSERT_GE(s.ticks.size(), 26u) << vm.describe();
  EXPECT_TRUE(consecutive(std::vector<long>(s.ticks.begin(), s.ticks.begin() + 25), 1)) << vm.describe();
  EXPECT_EQ(s.ticks[25], 1) << vm.describe();
}

INSTANTIATE_TEST_SUITE_P(Memory, NvhvReboot, ::testing::Values(false, true),
                         [](const auto& case_info) { return std::string(case_info.param ? "file_backed" : "anonymous"); });

TEST(NvhvReset, TripleFaultFailsTheRunUnderExit) {
  skip_without_kvm();
  TempDir dir;
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, testos_config("tf-exit", 1, 64, "triple_fault_after=2 tick_ms=10 mem_mib=4"))});
  auto status = vm.wait(60s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 1) << vm.describe();
  EXPECT_TRUE(has_line(vm.stderr_lines(), "vcpu0: triple fault (KVM_EXIT_SHUTDOWN)")) << vm.describe();
  EXPECT_EQ(summarize(vm.stdout_lines()).boots, 1) << vm.describe();
}

TEST(NvhvReset, TripleFaultRebootsUnderReboot) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("tf-reboot", 1, 64, "triple_fault_after=25 tick_ms=10 mem_mib=4");
  cfg["on_reset"] = "reboot";
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: triple fault$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stderr(std::regex("vcpu0: triple fault \\(KVM_EXIT_SHUTDOWN\\)"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stderr(std::regex("nvhv: guest reset: rebooting \\(cold boot\\)$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: boot$"), 30s)) << vm.describe();
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick 1 ok$"), 30s)) << vm.describe();
  vm.signal(SIGTERM);
  auto status = vm.wait(30s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 0) << vm.describe();
  EXPECT_GE(summarize(vm.stdout_lines()).boots, 2) << vm.describe();
}

TEST(NvhvReset, RebootStormExits1) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("reset-storm", 1, 64, "reset_after=1 tick_ms=5 mem_mib=4");
  cfg["on_reset"] = "reboot";
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  auto status = vm.wait(60s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 1) << vm.describe();
  const int allowed = static_cast<int>(kMaxRebootsInWindow);
  EXPECT_EQ(summarize(vm.stdout_lines()).boots, allowed + 1) << vm.describe();
  EXPECT_TRUE(has_line(vm.stderr_lines(), "guest reset: 6 reboots within 60 s: not rebooting again (reboot storm)")) << vm.describe();
}

TEST(NvhvReset, BadOnResetNamesTheField) {
  TempDir dir;
  auto cfg = testos_config("reset-bad", 1, 64, "");
  cfg["on_reset"] = "halt";
  ChildProcess vm({nvhv_bin(), "run", write_config(dir, cfg)});
  auto status = vm.wait(30s);
  ASSERT_TRUE(status) << vm.describe();
  EXPECT_EQ(*status, 2) << vm.describe();
  EXPECT_TRUE(has_line(vm.stderr_lines(), "/on_reset: must be \"exit\" or \"reboot\", got \"halt\"")) << vm.describe();
}

TEST(NvhvReset, RebootArgvIsColdWithoutOneShotOptions) {
  using V = std::vector<std::string>;
  EXPECT_EQ(reboot_argv(V{"nvhv", "run", "g.json"}), (V{"nvhv", "run", "g.json", "--cold"}));
  EXPECT_EQ(reboot_argv(V{"nvhv", "--log-level", "debug", "run", "g.json", "--swap-in", "vm.swap", "--force-swap-in", "--register"}),
            (V{"nvhv", "--log-level", "debug", "run", "g.json", "--register", "--cold"}));
  EXPECT_EQ(reboot_argv(V{"nvhv", "run", "--swap-in=vm.swap", "--cold", "g.json"}), (V{"nvhv", "run", "--cold", "g.json"}));
}

}  // namespace
}  // namespace nvhv::test
