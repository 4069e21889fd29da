// `nvhvctl fleet power-fail` and `nvhvctl fleet resume` on real testos VMs: a host's worth of
// VMs checkpointed at once and brought back where they were (docs/fleet.md).
#include <cstdio>

#include "tests/integration/fleet_support.hpp"

namespace nvhv::test {
namespace {

using nlohmann::json;

std::unique_ptr<ChildProcess> run_registered(const FleetVm& vm, const std::string& state) {
  return std::make_unique<ChildProcess>(std::vector<std::string>{nvhv_bin(), "run", "--register", "--state-dir", state, vm.config});
}

TEST(FleetPower, EightVmsPowerFailAtOnceAndAllResume) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  constexpr int kVms = 8;
  std::vector<FleetVm> vms;
  for (int i = 0; i < kVms; ++i) vms.emplace_back(dir, "fleet-vm" + std::to_string(i));
  std::vector<std::unique_ptr<ChildProcess>> runs;
  for (const auto& vm : vms) runs.push_back(run_registered(vm, state));
  for (int i = 0; i < kVms; ++i) ASSERT_TRUE(vms[i].wait_tick_above(1, 60s)) << runs[i]->describe();

  auto list = fleet(state, {"list"});
  ASSERT_EQ(list.status, 0) << list.describe();
  ASSERT_EQ(list.doc["vms"].size(), size_t{kVms});
  for (int i = 0; i < kVms; ++i) {
    EXPECT_EQ(list.doc["vms"][i]["status"], "running");
    EXPECT_EQ(list.doc["vms"][i]["pid"], runs[i]->pid());
  }

  // One notice to all eight at once.
  auto pf = fleet(state, {"power-fail", "--deadline-ms", "10000"});
  ASSERT_EQ(pf.status, 0) << pf.describe();
  const json& summary = pf.doc["summary"];
  EXPECT_EQ(summary["running"], kVms);
  EXPECT_EQ(summary["committed"], kVms);
  EXPECT_EQ(summary["failed"], 0);
  ASSERT_TRUE(summary["slowest"].is_object()) << pf.out;
  double slowest = 0;
  for (const auto& vm : pf.doc["vms"]) {
    EXPECT_EQ(vm["result"], "committed") << vm.dump();
    EXPECT_EQ(vm["via"], "api");
    EXPECT_EQ(vm["exited"], true);
    EXPECT_EQ(vm["figures"]["generation"], 1);
    const double elapsed = vm["elapsed_ms"].get<double>();
    EXPECT_GT(elapsed, vm["figures"]["total_us"].get<double>() / 1000.0) << "the notice-to-commit time contains the checkpoint";
    EXPECT_EQ(vm["met_deadline"], elapsed <= 10000.0);
    slowest = std::max(slowest, elapsed);
  }
  EXPECT_EQ(summary["slowest"]["elapsed_ms"].get<double>(), slowest);
  EXPECT_EQ(summary["missed_deadline"], slowest <= 10000.0 ? 0 : summary["missed_deadline"].get<int>());
  std::fprintf(stderr, "[ measured ] fleet power-fail of %d testos VMs: slowest %s committed %.1f ms after the notice\n", kVms,
               summary["slowest"]["name"].get<std::string>().c_str(), slowest);
  for (int i = 0; i < kVms; ++i) ASSERT_EQ(runs[i]->wait(20s).value_or(-1), 0) << runs[i]->describe();
  std::vector<long> ticks_before;
  for (const auto& vm : vms) {
    json e = listed(state, vm.name);
    EXPECT_EQ(e["status"], "checkpointed");
    EXPECT_EQ(e["last_checkpoint"]["generation"], 1);
    ticks_before.push_back(vm.last_tick());
  }

  // All eight back, detached from this test, where they were.
  auto res = fleet(state, {"resume", "--timeout-ms", "60000"});
  ASSERT_EQ(res.status, 0) << res.describe();
  EXPECT_EQ(res.doc["summary"]["resumed"], kVms) << res.out;
  EXPECT_EQ(res.doc["summary"]["failed"], 0);
  for (const auto& vm : res.doc["vms"]) {
    EXPECT_EQ(vm["action"], "resume");
    EXPECT_EQ(vm["resumed_generation"], 1);
    EXPECT_EQ(vm["image"]["state"], "resumable");
  }
  std::fprintf(stderr, "[ measured ] fleet resume of %d VMs: slowest %s running %.1f ms after its start\n", kVms,
               res.doc["summary"]["slowest"]["name"].get<std::string>().c_str(),
               res.doc["summary"]["slowest"]["elapsed_ms"].get<double>());
  for (int i = 0; i < kVms; ++i) {
    EXPECT_TRUE(vms[i].wait_tick_above(ticks_before[i] + 2, 60s)) << vms[i].name << " does not tick on";
    EXPECT_EQ(vms[i].check_serial(), "");
  }
  // A second round through the same path ends them (and shows the registry follows detached runs).
  pf = fleet(state, {"power-fail"});
  ASSERT_EQ(pf.status, 0) << pf.describe();
  EXPECT_EQ(pf.doc["summary"]["committed"], kVms);
  for (const auto& vm : pf.doc["vms"]) EXPECT_EQ(vm["figures"]["generation"], 2);
  for (const auto& vm : vms) EXPECT_EQ(vm.check_serial(), "");
}

TEST(FleetPower, WithoutAnApiSocketSigpwrIsSentAndTheRegistryHasTheFigures) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  FleetVm vm(dir, "no-api", /*with_api=*/false);
  auto run = run_registered(vm, state);
  ASSERT_TRUE(vm.wait_tick_above(1, 30s)) << run->describe();
  // 1 ms cannot be met: a missed deadline is reported, but every VM committed, so exit 0.
  auto pf = fleet(state, {"power-fail", "--deadline-ms", "1"});
  ASSERT_EQ(pf.status, 0) << pf.describe();
  json r = vm_named(pf.doc, "no-api");
  EXPECT_EQ(r["via"], "sigpwr");
  EXPECT_EQ(r["result"], "committed");
  EXPECT_EQ(r["figures"]["generation"], 1);
  EXPECT_EQ(r["met_deadline"], false);
  EXPECT_EQ(pf.doc["summary"]["missed_deadline"], 1);
  EXPECT_EQ(run->wait(10s).value_or(-1), 0) << run->describe();
  auto text = run_command({nvhvctl_bin(), "fleet", "power-fail", "--state-dir", state}, 20s);
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("no-api: not running (checkpointed)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("fleet power-fail: 0 running VMs: 0 committed, 0 failed"), std::string::npos) << text.out;
}

TEST(FleetPower, ResumeBootsAutostartVmsSkipsTheOthersAndSwapsInASwappedOutOne) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  FleetVm autostart(dir, "auto-vm"), manual(dir, "manual-vm"), swapped(dir, "swapped-vm");
  ASSERT_EQ(run_command({nvhv_bin(), "register", autostart.config, "--autostart", "--state-dir", state}, 20s).status, 0);
  ASSERT_EQ(run_command({nvhv_bin(), "register", manual.config, "--state-dir", state}, 20s).status, 0);

  // swapped-vm runs, then swaps itself out through its API: the registry learns the swap file.
  auto run = run_registered(swapped, state);
  ASSERT_TRUE(swapped.wait_tick_above(1, 30s)) << run->describe();
  const std::string swap_file = dir.file("swapped-vm.swap");
  auto so = run_command({nvhvctl_bin(), "--socket", swapped.socket, "vm.swap_out", json{{"path", swap_file}}.dump()}, 60s);
  ASSERT_EQ(so.status, 0) << so.err;
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  json e = listed(state, "swapped-vm");
  EXPECT_EQ(e["status"], "swapped_out");
  EXPECT_EQ(e["swap_file"], swap_file);
  const long swapped_tick = swapped.last_tick();

  auto res = fleet(state, {"resume"});
  ASSERT_EQ(res.status, 0) << res.describe();
  json a = vm_named(res.doc, "auto-vm"), m = vm_named(res.doc, "manual-vm"), s = vm_named(res.doc, "swapped-vm");
  EXPECT_EQ(a["action"], "boot");
  EXPECT_EQ(a["result"], "booted");
  EXPECT_EQ(a["image"]["state"], "absent");
  EXPECT_EQ(m["result"], "skipped");
  EXPECT_EQ(m["detail"], "no checkpoint to resume, and autostart is off");
  EXPECT_EQ(s["action"], "swap_in");
  EXPECT_EQ(s["result"], "resumed");
  EXPECT_EQ(s["image"]["state"], "swapped_out");
  ASSERT_TRUE(autostart.wait_tick_above(1, 30s));
  ASSERT_TRUE(swapped.wait_tick_above(swapped_tick + 1, 30s));
  EXPECT_TRUE(listed(state, "swapped-vm")["swap_file"].is_null()) << "the swap-in consumed it";

  // Resuming again changes nothing for running VMs.
  res = fleet(state, {"resume"});
  ASSERT_EQ(res.status, 0) << res.describe();
  EXPECT_EQ(vm_named(res.doc, "auto-vm")["result"], "already_running");
  EXPECT_EQ(res.doc["summary"]["already_running"], 2);

  auto pf = fleet(state, {"power-fail"});
  ASSERT_EQ(pf.status, 0) << pf.describe();
  EXPECT_EQ(pf.doc["summary"]["committed"], 2);
  EXPECT_EQ(vm_named(pf.doc, "manual-vm")["result"], "not_running");
  res = fleet(state, {"resume"});
  ASSERT_EQ(res.status, 0) << res.describe();
  EXPECT_EQ(vm_named(res.doc, "auto-vm")["result"], "resumed");
  EXPECT_EQ(vm_named(res.doc, "auto-vm")["resumed_generation"], 1);
  ASSERT_TRUE(autostart.wait_tick_above(autostart.last_tick() + 1, 30s));
  pf = fleet(state, {"power-fail"});
  ASSERT_EQ(pf.status, 0) << pf.describe();
  EXPECT_EQ(autostart.check_serial(), "");
  EXPECT_EQ(swapped.check_serial(), "");
}

TEST(FleetPower, AVmThatCannotStartIsReportedWithItsLog) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  FleetVm vm(dir, "broken-vm");
  ASSERT_EQ(run_command({nvhv_bin(), "register", vm.config, "--autostart", "--state-dir", state}, 20s).status, 0);
  // Its image is something else's file: nvhv refuses it and says why.
  std::ofstream(dir.file("broken-vm.img")) << std::string(1 << 20, 'x');
  // This one starts, but nvhv finds no kernel: the report quotes the end of its log.
  auto cfg = testos_config("no-kernel-vm", 1, 40, "");
  cfg["kernel"] = dir.file("missing.elf");
  const std::string no_kernel = write_config(dir, cfg, "no-kernel-vm.json");
  ASSERT_EQ(run_command({nvhv_bin(), "register", no_kernel, "--autostart", "--state-dir", state}, 20s).status, 0);

  auto res = fleet(state, {"resume"});
  EXPECT_EQ(res.status, 1) << res.describe();
  json r = vm_named(res.doc, "broken-vm");
  EXPECT_EQ(r["result"], "failed");
  EXPECT_EQ(r["action"], "none");
  EXPECT_EQ(r["image"]["state"], "unusable");
  EXPECT_NE(r["detail"].get<std::string>().find("is not an nvhv image"), std::string::npos) << r.dump();
  r = vm_named(res.doc, "no-kernel-vm");
  EXPECT_EQ(r["action"], "boot");
  EXPECT_EQ(r["result"], "failed");
  const std::string detail = r["detail"].get<std::string>();
  EXPECT_NE(detail.find("nvhv exited with status 1 before the VM ran: "), std::string::npos) << detail;
  EXPECT_NE(detail.find("missing.elf"), std::string::npos) << detail;
  EXPECT_EQ(r["log"], state + "/logs/no-kernel-vm.log");
  json e = listed(state, "no-kernel-vm");
  EXPECT_EQ(e["status"], "failed");
  EXPECT_EQ(e["exit_status"], 1);
}

}  // namespace
}  // namespace nvhv::test
