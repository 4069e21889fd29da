// The host registry through the real binaries: `nvhv register/unregister/inspect`,
// `nvhv run --register` keeping its entry current, `nvhvctl fleet list`, and the errors bad
// entries and configs give (docs/fleet.md).
#include <fstream>

#include "tests/integration/fleet_support.hpp"

namespace nvhv::test {
namespace {

using nlohmann::json;

std::unique_ptr<ChildProcess> run_registered(const FleetVm& vm, const std::string& state, std::vector<std::string> env = {}) {
  std::vector<std::string> argv{nvhv_bin(), "run", "--register"};
  if (env.empty()) argv.insert(argv.end(), {"--state-dir", state});
  argv.push_back(vm.config);
  return std::make_unique<ChildProcess>(argv, ChildProcess::Options{env, false});
}

std::string inspect_state(const FleetVm& vm) {
  auto r = run_json({nvhv_bin(), "inspect", vm.config, "--json"});
  return r.doc.is_object() ? r.doc["image"]["state"].get<std::string>() : "(no JSON: " + r.describe() + ")";
}

TEST(FleetRegistry, EntryFollowsEveryRunOfTheVm) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  FleetVm vm(dir, "reg-vm");

  EXPECT_EQ(inspect_state(vm), "absent");
  auto reg = run_command({nvhv_bin(), "register", vm.config, "--state-dir", state}, 20s);
  ASSERT_EQ(reg.status, 0) << reg.err;
  EXPECT_NE(reg.out.find(state + "/vms/reg-vm.json"), std::string::npos) << reg.out;
  json e = listed(state, "reg-vm");
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["status"], "registered");
  EXPECT_EQ(e["config"], vm.config);
  EXPECT_EQ(e["api_socket"], vm.socket);
  EXPECT_EQ(e["autostart"], false);

  // Running: the entry names this process.
  auto run = run_registered(vm, state);
  ASSERT_TRUE(vm.wait_tick_above(1, 30s)) << run->describe();
  e = listed(state, "reg-vm");
  EXPECT_EQ(e["status"], "running");
  EXPECT_EQ(e["alive"], true);
  EXPECT_EQ(e["pid"], run->pid());
  EXPECT_EQ(e["detail"], "booted");
  EXPECT_EQ(inspect_state(vm), "in_use");

  // A power-fail notice: checkpointed, with the checkpoint's figures.
  run->signal(SIGPWR);
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  e = listed(state, "reg-vm");
  EXPECT_EQ(e["status"], "checkpointed");
  EXPECT_TRUE(e["pid"].is_null());
  EXPECT_EQ(e["exit_status"], 0);
  EXPECT_EQ(e["last_checkpoint"]["generation"], 1);
  EXPECT_GT(e["last_checkpoint"]["total_us"].get<uint64_t>(), 0u);
  EXPECT_EQ(inspect_state(vm), "resumable");

  // The state directory from the environment; a resume, then SIGTERM: stopped (no checkpoint).
  const long before = vm.last_tick();
  run = run_registered(vm, state, {"NVHV_STATE_DIR=" + state});
  ASSERT_TRUE(vm.wait_tick_above(before + 1, 30s)) << run->describe();
  e = listed(state, "reg-vm");
  EXPECT_EQ(e["status"], "running");
  EXPECT_EQ(e["resumed_generation"], 1);
  EXPECT_EQ(e["detail"], "resumed gen=1");
  run->signal(SIGTERM);
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  e = listed(state, "reg-vm");
  EXPECT_EQ(e["status"], "stopped");
  EXPECT_EQ(e["detail"], "SIGTERM");
  EXPECT_EQ(e["last_checkpoint"]["generation"], 1) << "the last checkpoint's figures are kept";
  EXPECT_EQ(inspect_state(vm), "no_checkpoint");

  // Without --register nothing is written.
  const json untouched = listed(state, "reg-vm");
  auto plain = std::make_unique<ChildProcess>(std::vector<std::string>{nvhv_bin(), "run", vm.config},
                                              ChildProcess::Options{{"NVHV_STATE_DIR=" + state}, false});
  ASSERT_TRUE(vm.wait_tick_above(vm.last_tick(), 30s)) << plain->describe();
  plain->signal(SIGTERM);
  ASSERT_EQ(plain->wait(20s).value_or(-1), 0) << plain->describe();
  EXPECT_EQ(listed(state, "reg-vm"), untouched);

  // A run that dies without a word: its "running" claim is reported stale, never trusted.
  run = run_registered(vm, state);
  ASSERT_TRUE(vm.wait_tick_above(vm.last_tick(), 30s)) << run->describe();
  ASSERT_TRUE(listed(state, "reg-vm")["alive"].get<bool>());
  run->signal(SIGKILL);
  run->wait(10s);
  e = listed(state, "reg-vm");
  EXPECT_EQ(e["status"], "dead");
  EXPECT_EQ(e["recorded_status"], "running");
  EXPECT_EQ(e["alive"], false);
  auto text = run_command({nvhvctl_bin(), "fleet", "list", "--state-dir", state}, 20s);
  EXPECT_EQ(text.status, 0);
  EXPECT_TRUE(std::regex_search(text.out, std::regex("reg-vm +dead \\(was running\\) +- +no"))) << text.out;

  // Unregistering: gone from the list; a second time is an error naming the VM.
  auto unreg = run_command({nvhv_bin(), "unregister", "reg-vm", "--state-dir", state}, 20s);
  ASSERT_EQ(unreg.status, 0) << unreg.err;
  EXPECT_TRUE(listed(state, "reg-vm").is_null());
  unreg = run_command({nvhv_bin(), "unregister", "reg-vm", "--state-dir", state}, 20s);
  EXPECT_EQ(unreg.status, 1);
  EXPECT_NE(unreg.err.find("no VM named reg-vm is registered in " + state), std::string::npos) << unreg.err;
}

TEST(FleetRegistry, UnregisterRefusesARunningVmUnlessForced) {
  skip_without_kvm();
  TempDir dir;
  const std::string state = dir.file("state");
  FleetGuard guard(state);
  FleetVm vm(dir, "busy-vm");
  auto run = run_registered(vm, state);
  ASSERT_TRUE(vm.wait_tick_above(0, 30s)) << run->describe();
  auto r = run_command({nvhv_bin(), "unregister", "busy-vm", "--state-dir", state}, 20s);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("busy-vm is running as pid " + std::to_string(run->pid())), std::string::npos) << r.err;
  r = run_command({nvhv_bin(), "unregister", "busy-vm", "--force", "--state-dir", state}, 20s);
  EXPECT_EQ(r.status, 0) << r.err;
  // The run no longer owns an entry: stopping it must not bring one back.
  run->signal(SIGPWR);
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  EXPECT_TRUE(listed(state, "busy-vm").is_null());
}

TEST(FleetRegistry, BadEntriesAndConfigsGiveClearErrors) {
  TempDir dir;
  const std::string state = dir.file("state");
  FleetVm good(dir, "good-vm");
  ASSERT_EQ(run_command({nvhv_bin(), "register", good.config, "--state-dir", state}, 20s).status, 0);
  const std::string vms = state + "/vms/";
  std::ofstream(vms + "garbage.json") << "this is not JSON";
  std::ofstream(vms + "other.json") << R"({"format": "someone-elses-format", "version": 1})";
  std::ofstream(vms + "future.json") << R"({"format": "nvhv-registry-entry", "version": 2, "name": "future"})";
  std::ofstream(vms + "typo.json") << R"({"format": "nvhv-registry-entry", "version": 1, "name": "typo",
                                         "config": "/etc/nvhv/typo.json", "status": "runing"})";
  std::ofstream(vms + "renamed.json") << R"({"format": "nvhv-registry-entry", "version": 1, "name": "good-vm",
                                            "config": "/etc/nvhv/x.json", "status": "registered"})";
  std::ofstream(vms + "relative.json") << R"({"format": "nvhv-registry-entry", "version": 1, "name": "relative",
                                             "config": "x.json", "status": "registered"})";
  std::ofstream(vms + "good-vm.json.tmp.1234") << "a write cut short by a crash";

  auto r = fleet(state, {"list"});
  EXPECT_EQ(r.status, 1) << r.describe();
  ASSERT_TRUE(r.doc.is_object()) << r.describe();
  ASSERT_EQ(r.doc["vms"].size(), 1u) << "the readable entry is still listed";
  EXPECT_EQ(r.doc["vms"][0]["name"], "good-vm");
  const std::string errors = r.doc["errors"].dump();
  EXPECT_EQ(r.doc["errors"].size(), 6u) << errors;
  for (const std::string& expected :
       {vms + "garbage.json: not a registry entry: the file is not valid JSON",
        vms + "other.json: not a registry entry: /format is \\\"someone-elses-format\\\", expected \\\"nvhv-registry-entry\\\"",
        vms + "future.json: registry entry version 2 is not supported (this nvhv reads version 1)",
        vms + "typo.json: /status: unknown status \\\"runing\\\" (expected one of registered, starting, running",
        vms + "renamed.json: /name: the entry names VM 'good-vm', but its file is named for 'renamed'",
        vms + "relative.json: /config: must be an absolute path"})
    EXPECT_NE(errors.find(expected), std::string::npos) << expected << "\nnot in: " << errors;
  EXPECT_NE(r.err.find("garbage.json: not a registry entry"), std::string::npos) << r.err;

  // A registered config that has gone: resume names it and fails.
  std::filesystem::remove(good.config);
  r = fleet(state, {"resume"});
  EXPECT_EQ(r.status, 1) << r.describe();
  json vm = vm_named(r.doc, "good-vm");
  EXPECT_EQ(vm["result"], "failed");
  EXPECT_EQ(vm["detail"], good.config + ": the config file does not exist");

  // nvhv's own commands.
  auto missing = run_command({nvhv_bin(), "register", dir.file("missing.json"), "--state-dir", state}, 20s);
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("missing.json"), std::string::npos) << missing.err;
  std::ofstream(dir.file("bad.json")) << R"({"name": "bad", "memory": {"size_mib": "lots"}, "kernel": "k"})";
  auto bad = run_command({nvhv_bin(), "register", dir.file("bad.json"), "--state-dir", state}, 20s);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("/memory/size_mib"), std::string::npos) << bad.err;
  auto bad_name = run_command({nvhv_bin(), "unregister", "../etc", "--state-dir", state}, 20s);
  EXPECT_EQ(bad_name.status, 2);
  EXPECT_NE(bad_name.err.find("'../etc' is not a VM name"), std::string::npos) << bad_name.err;
  auto no_register = run_command({nvhv_bin(), "run", "--state-dir", state, good.config}, 20s);
  EXPECT_EQ(no_register.status, 2) << "--state-dir without --register";
  FleetVm other(dir, "other-vm");
  std::ofstream(dir.file("not-a-dir")) << "x";
  auto unwritable = run_command({nvhv_bin(), "register", other.config, "--state-dir", dir.file("not-a-dir")}, 20s);
  EXPECT_EQ(unwritable.status, 1);
  EXPECT_NE(unwritable.err.find(dir.file("not-a-dir") + ": exists but is not a directory"), std::string::npos) << unwritable.err;
}

}  // namespace
}  // namespace nvhv::test
