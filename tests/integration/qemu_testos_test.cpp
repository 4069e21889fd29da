// Boots testos under QEMU (the PVH entry) and checks the serial contract of docs/testos.md.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/child_process.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kQboot = "/usr/share/qemu/qboot.rom";

struct QemuRun {
  int status = -1;
  std::vector<std::string> lines;  // testos lines only, firmware text before "testos: " cut off
  std::string log;                 // everything, for failure messages
};

// QEMU's PVH loader, KVM, a default machine; `extra` adds firmware or SMP options.
QemuRun run_qemu(const std::string& append, const std::vector<std::string>& extra, int mem_mib = 256) {
  std::vector<std::string> argv = {"qemu-system-x86_64", "-enable-kvm", "-m", std::to_string(mem_mib),
                                   "-nographic", "-no-reboot", "-serial", "stdio", "-display", "none",
                                   "-monitor", "none", "-kernel", build_dir() + "/guest-images/testos.elf",
                                   "-append", append};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ChildProcess qemu(argv);
  auto status = qemu.wait(90s);  // SeaBIOS alone takes 5-10 s under nested KVM
  QemuRun r;
  r.status = status ? *status : -1;
  r.log = qemu.describe();
  for (const auto& l : qemu.stdout_lines()) {
    auto at = l.find("testos: ");
    if (at != std::string::npos) r.lines.push_back(l.substr(at));
  }
  return r;
}

void skip_without_kvm() {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm is not available";
}

// Exactly one boot line, `cpus`, ticks 1..n all ok, nothing else, and a clean power-off.
void expect_clean_run(const QemuRun& r, int cpus, int ticks) {
  std::vector<std::string> want = {"testos: boot", "testos: cpus " + std::to_string(cpus)};
  for (int i = 1; i <= ticks; ++i) want.push_back("testos: tick " + std::to_string(i) + " ok");
  EXPECT_EQ(r.status, 0) << r.log;
  EXPECT_EQ(r.lines, want) << r.log;
}

TEST(QemuTestos, OneVcpuSeaBios) {
  skip_without_kvm();
  expect_clean_run(run_qemu("ticks=5 tick_ms=50", {}), 1, 5);
}

// SeaBIOS lists one processor per package in its MP table, so the two vCPUs must be two sockets.
TEST(QemuTestos, TwoVcpusSeaBios) {
  skip_without_kvm();
  expect_clean_run(run_qemu("ticks=5 tick_ms=50", {"-smp", "2,sockets=2"}), 2, 5);
}

// qboot prints nothing and has no MP table: the first byte on the serial port is testos'.
TEST(QemuTestos, QbootFirstLineIsBoot) {
  skip_without_kvm();
  if (access(kQboot, R_OK) != 0) GTEST_SKIP() << kQboot << " is not installed";
  auto start = std::chrono::steady_clock::now();
  QemuRun r = run_qemu("ticks=3 tick_ms=20 mem_mib=64", {"-bios", kQboot});
  expect_clean_run(r, 1, 3);
  std::cout << "qboot boot to power-off: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count()
            << " ms\n";
}

// The self-test key damages one word after tick 2: tick 3 must say so, tick 4 is clean again.
TEST(QemuTestos, ReportsCorruption) {
  skip_without_kvm();
  std::vector<std::string> firmware;
  if (access(kQboot, R_OK) == 0) firmware = {"-bios", kQboot};
  QemuRun r = run_qemu("ticks=4 tick_ms=20 corrupt_tick=2", firmware);
  EXPECT_EQ(r.status, 0) << r.log;
  ASSERT_EQ(r.lines.size(), 7u) << r.log;
  EXPECT_EQ(r.lines[3], "testos: tick 2 ok");
  EXPECT_EQ(r.lines[4], "testos: tick 3 CORRUPT");
  EXPECT_TRUE(std::regex_match(r.lines[5], std::regex(R"(testos: corrupt cpu=0 words=1 first=0x2000000 want=0x[0-9a-f]+ got=0x[0-9a-f]+)")))
      << r.lines[5];
  EXPECT_EQ(r.lines[6], "testos: tick 4 ok");
}

TEST(QemuTestos, WorkloadLargerThanRamIsAnError) {
  skip_without_kvm();
  std::vector<std::string> firmware;
  if (access(kQboot, R_OK) == 0) firmware = {"-bios", kQboot};
  QemuRun r = run_qemu("ticks=2 mem_mib=40", firmware, 64);
  EXPECT_EQ(r.status, 0) << r.log;
  ASSERT_EQ(r.lines.size(), 2u) << r.log;
  EXPECT_EQ(r.lines[1], "testos: error mem_mib=40 does not fit in RAM (workload at 0x2000000-0x4800000)");
}

}  // namespace
}  // namespace nvhv::test
