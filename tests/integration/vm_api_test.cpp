// The VM methods of the management API against a real nvhv running testos, over its real
// Unix socket (docs/api.md).
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <chrono>
#include <thread>

#include "tests/integration/checkpoint_support.hpp"
#include "vmm/api/line_client.hpp"
#include "vmm/api/rpc_error.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct ApiVm {
  ApiVm(bool persistent, int vcpus = 2, const std::string& cmdline = "tick_ms=10 mem_mib=4") {
    auto cfg = testos_config("api", vcpus, 64, cmdline);
    if (persistent) cfg["memory"]["backing"] = dir.file("vm.img");
    socket = dir.file("api.sock");
    cfg["api"] = {{"socket", socket}};
    config = write_config(dir, cfg);
  }
  std::unique_ptr<ChildProcess> start() {
    auto run = std::make_unique<ChildProcess>(std::vector<std::string>{nvhv_bin(), "run", config});
    if (!run->wait_stdout(std::regex("^testos: tick 1 ok$|^testos: tick \\d+ ok$"), 20s)) return run;
    return run;
  }
  api::LineClient client() { return api::LineClient::connect(socket); }
  TempDir dir;
  std::string config;
  std::string socket;
};

json call(api::LineClient& c, const std::string& method, const json& params = nullptr) { return c.call(method, params, 30s); }

TEST(VmApi, StatusReportsTheVm) {
  skip_without_kvm();
  ApiVm vm(true);
  auto run = vm.start();
  auto c = vm.client();
  json r = call(c, "vm.status");
  ASSERT_TRUE(r.contains("result")) << r.dump();
  const json& s = r["result"];
  EXPECT_EQ(s["state"], "running");
  EXPECT_EQ(s["name"], "api");
  EXPECT_EQ(s["vcpus"], 2);
  EXPECT_EQ(s["memory"]["size_mib"], 64);
  EXPECT_EQ(s["memory"]["persistent"], true);
  EXPECT_EQ(s["memory"]["backing"], vm.dir.file("vm.img"));
  EXPECT_EQ(s["checkpoint"]["generation"], 0);
  EXPECT_GT(s["uptime_s"].get<double>(), 0.0);
  struct stat st {};
  ASSERT_EQ(stat(vm.socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Parameters where none are taken: -32602.
  EXPECT_EQ(call(c, "vm.status", json{{"verbose", true}})["error"]["code"], api::code::invalid_params);
  EXPECT_EQ(call(c, "vm.nonesuch")["error"]["code"], api::code::method_not_found);
}

TEST(VmApi, PauseStopsTheGuestAndResumeContinuesIt) {
  skip_without_kvm();
  ApiVm vm(false);
  auto run = vm.start();
  auto c = vm.client();
  auto sub = vm.client();
  ASSERT_EQ(call(sub, "vm.subscribe")["result"]["subscribed"], true);
  ASSERT_EQ(call(c, "vm.pause")["result"]["state"], "paused");
  EXPECT_EQ(call(c, "vm.status")["result"]["state"], "paused");
  EXPECT_EQ(call(c, "vm.pause")["result"]["state"], "paused");  // idempotent
  size_t ticks_at_pause = run->stdout_lines().size();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(run->stdout_lines().size(), ticks_at_pause) << "the guest ticked while paused";
  ASSERT_EQ(call(c, "vm.resume")["result"]["state"], "running");
  ASSERT_TRUE(run->wait_stdout(std::regex("^testos: tick \\d+ ok$"), 10s)) << "no tick after resume";
  std::string line;
  ASSERT_EQ(sub.read_line(line, 5s), api::LineClient::ReadStatus::line);
  json n = json::parse(line);
  EXPECT_EQ(n["method"], "vm.state_changed");
  EXPECT_EQ(n["params"]["state"], "paused");
  ASSERT_EQ(sub.read_line(line, 5s), api::LineClient::ReadStatus::line);
  EXPECT_EQ(json::parse(line)["params"]["state"], "running");
  run->signal(SIGTERM);
  ASSERT_EQ(run->wait(10s).value_or(-1), 0);
  auto s = summarize(run->stdout_lines());
  EXPECT_EQ(s.corrupt, 0);
  EXPECT_TRUE(consecutive(s.ticks, 1));
}

TEST(VmApi, StatsCountExitsAndRunTime) {
  skip_without_kvm();
  ApiVm vm(true);
  auto run = vm.start();
  auto c = vm.client();
  json st = call(c, "vm.stats")["result"];
  ASSERT_EQ(st["vcpus"].size(), 2u);
  EXPECT_GT(st["exits"]["io"].get<uint64_t>(), 0u);  // testos writes its tick lines through port I/O
  EXPECT_GT(st["vcpus"][0]["run_time_s"].get<double>(), 0.0);
  EXPECT_TRUE(st["last_checkpoint"].is_null());
  EXPECT_TRUE(st["writeback"].is_object());
}

TEST(VmApi, PowerFailRepliesWithTheCommittedCheckpointThenExits) {
  skip_without_kvm();
  ApiVm vm(true);
  auto run = vm.start();
  auto c = vm.client();
  json r = call(c, "vm.power_fail");
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["generation"], 1);
  EXPECT_GT(r["result"]["total_us"].get<uint64_t>(), 0u);
  ASSERT_EQ(run->wait(10s).value_or(-1), 0) << run->describe();
  // Same path as SIGPWR: the next run resumes it.
  auto next = vm.start();
  auto c2 = vm.client();
  json s = call(c2, "vm.status")["result"];
  EXPECT_EQ(s["checkpoint"]["resumed"], true);
  EXPECT_EQ(s["checkpoint"]["generation"], 1);
  EXPECT_EQ(call(c2, "vm.shutdown")["result"]["state"], "stopping");
  ASSERT_EQ(next->wait(10s).value_or(-1), 0) << next->describe();
  Transcript t;
  t.add_run(*run, false);
  t.add_run(*next, true);
  EXPECT_EQ(t.boots(), 1);
  EXPECT_EQ(t.check(), "");
}

TEST(VmApi, PowerFailWhilePausedStillSavesEveryVcpu) {
  skip_without_kvm();
  ApiVm vm(true);
  auto run = vm.start();
  auto c = vm.client();
  ASSERT_EQ(call(c, "vm.pause")["result"]["state"], "paused");
  json r = call(c, "vm.power_fail");
  ASSERT_TRUE(r.contains("result")) << r.dump();
  ASSERT_EQ(run->wait(10s).value_or(-1), 0) << run->describe();
  auto next = vm.start();
  auto c2 = vm.client();
  EXPECT_EQ(call(c2, "vm.status")["result"]["checkpoint"]["resumed"], true);
  ASSERT_TRUE(next->wait_stdout(std::regex("^testos: tick \\d+ ok$"), 10s)) << next->describe();
  call(c2, "vm.shutdown");
  ASSERT_EQ(next->wait(10s).value_or(-1), 0);
  Transcript t;
  t.add_run(*run, false);
  t.add_run(*next, true);
  EXPECT_EQ(t.boots(), 1);
  EXPECT_EQ(t.check(), "");
}

// A running VM swapped out through the API comes back on another backing where it was.
TEST(VmApi, SwapOutThenSwapInOntoAnotherBacking) {
  skip_without_kvm();
  ApiVm vm(true);
  auto run = vm.start();
  auto c = vm.client();
  auto sub = vm.client();
  call(sub, "vm.subscribe");
  EXPECT_EQ(call(c, "vm.swap_out", json{{"path", ""}})["error"]["code"], api::code::invalid_params);
  EXPECT_EQ(call(c, "vm.swap_out", json{{"path", "x"}, {"level", 99}})["error"]["code"], api::code::invalid_params);
  const std::string swap = vm.dir.file("vm.swap");
  json r = call(c, "vm.swap_out", json{{"path", swap}});
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["checkpoint"]["generation"], 1);
  // testos uses a few MiB of its 64: chunks it touched in part are stored as their used pages.
  const json& chunks = r["result"]["chunks"];
  EXPECT_GT(chunks["sparse"].get<uint64_t>(), 0u) << r.dump();
  EXPECT_LE(chunks["sparse"].get<uint64_t>(), chunks["compressed"].get<uint64_t>() + chunks["raw"].get<uint64_t>());
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  ASSERT_TRUE(std::filesystem::exists(swap));
  bool progress = false;
  for (std::string line; sub.read_line(line, 2s) == api::LineClient::ReadStatus::line;)
    progress |= json::parse(line)["method"] == "vm.swap_progress";
  EXPECT_TRUE(progress);

  // The same VM, its RAM now on another backing.
  auto cfg = testos_config("api", 2, 64, "tick_ms=10 mem_mib=4");
  cfg["memory"]["backing"] = vm.dir.file("other.img");
  auto other = write_config(vm.dir, cfg, "other.json");
  ChildProcess next({nvhv_bin(), "run", other, "--swap-in", swap});
  ASSERT_TRUE(next.wait_stdout(std::regex("^testos: tick \\d+ ok$"), 30s)) << next.describe();
  EXPECT_TRUE(any_line_matches(next.stderr_lines(), std::regex("resumed gen="))) << next.describe();
  next.signal(SIGTERM);
  ASSERT_EQ(next.wait(10s).value_or(-1), 0) << next.describe();
  Transcript t;
  t.add_run(*run, false);
  t.add_run(next, true);
  EXPECT_EQ(t.boots(), 1);
  EXPECT_EQ(t.check(), "");
  // The swapped-out backing is not a runnable VM any more.
  auto stale = run_command({nvhv_bin(), "run", vm.config}, 20s);
  EXPECT_EQ(stale.status, 1) << stale.err;
}

TEST(VmApi, PowerFailWithoutPersistentMemoryIsAnInvalidStateError) {
  skip_without_kvm();
  ApiVm vm(false);
  auto run = vm.start();
  auto c = vm.client();
  json r = call(c, "vm.power_fail");
  EXPECT_EQ(r["error"]["code"], api::code::invalid_state) << r.dump();
  EXPECT_EQ(call(c, "vm.status")["result"]["state"], "running");
}

TEST(VmApi, LiveSocketIsRefusedStaleSocketIsReplaced) {
  skip_without_kvm();
  ApiVm vm(false);
  auto run = vm.start();
  // A second VM configured with the same socket path while the first answers: refused.
  auto cfg = testos_config("api2", 1, 64, "tick_ms=10");
  cfg["api"] = {{"socket", vm.socket}};
  auto second = run_command({nvhv_bin(), "run", write_config(vm.dir, cfg, "second.json")}, 20s);
  EXPECT_NE(second.status, 0);
  EXPECT_NE(second.err.find(vm.socket), std::string::npos) << second.err;
  // Killed without clean-up, the first leaves a stale socket file, which the next start replaces.
  run->signal(SIGKILL);
  run->wait(10s);
  auto again = vm.start();
  auto c = vm.client();
  EXPECT_EQ(call(c, "vmm.ping")["result"], "pong");
}

// 16 clients x 1,000 requests while testos ticks: every request answered, no tick missed.
TEST(VmApi, LoadOfSixteenClientsDoesNotDisturbTheGuest) {
  skip_without_kvm();
  ApiVm vm(true, 2, "tick_ms=10 mem_mib=4");
  auto run = vm.start();
  std::atomic<int> answered{0}, wrong{0};
  std::vector<std::thread> clients;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 16; ++i) {
    clients.emplace_back([&, i] {
      auto c = vm.client();
      const char* methods[] = {"vmm.ping", "vm.status", "vm.stats", "vmm.version"};
      for (int k = 0; k < 1000; ++k) {
        json r = c.call(methods[(i + k) % 4], nullptr, 30s, k + 1);
        if (r.contains("result") && r["id"] == k + 1)
          ++answered;
        else
          ++wrong;
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("16 x 1000 requests in %.2f s (%.0f requests/s)\n", seconds, 16000 / seconds);
  EXPECT_EQ(answered.load(), 16000);
  EXPECT_EQ(wrong.load(), 0);
  run->signal(SIGTERM);
  ASSERT_EQ(run->wait(10s).value_or(-1), 0);
  auto s = summarize(run->stdout_lines());
  EXPECT_EQ(s.corrupt, 0);
  EXPECT_TRUE(consecutive(s.ticks, 1)) << run->describe();
  EXPECT_GT(s.ticks.size(), 3u);
}

}  // namespace
}  // namespace nvhv::test
