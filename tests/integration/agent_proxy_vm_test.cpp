// agent.* through a real `nvhv run`: the proxy's wiring in the Machine and VmApi. testos has no
// virtio-console driver, so requests reach the console's input buffer and are never answered:
// what shows here is the timeout, the error without a console, the shutdown error and vm.status.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/integration/nvhv_support.hpp"
#include "vmm/api/line_client.hpp"
#include "vmm/api/rpc_error.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct Vm {
  explicit Vm(bool console) {
    auto cfg = testos_config("agent-proxy", 1, 64, "tick_ms=10 mem_mib=4");
    cfg["api"] = {{"socket", dir.file("api.sock")}};
    if (console) cfg["console"] = {{"log", "console.log"}};
    run = std::make_unique<ChildProcess>(std::vector<std::string>{nvhv_bin(), "run", write_config(dir, cfg)});
    EXPECT_TRUE(run->wait_stdout(std::regex("^testos: tick 1 ok$"), 30s)) << run->describe();
  }
  api::LineClient client() { return api::LineClient::connect(dir.file("api.sock")); }
  TempDir dir;
  std::unique_ptr<ChildProcess> run;
};

TEST(AgentProxyVm, WithoutAConsoleTheErrorSaysSo) {
  skip_without_kvm();
  Vm vm(false);
  auto c = vm.client();
  auto r = c.call("agent.wpp.list", nullptr, 10s);
  EXPECT_EQ(r["error"]["code"], api::code::invalid_state) << r;
  EXPECT_NE(r["error"]["message"].get<std::string>().find("agent.wpp.list: this VM has no virtio console"), std::string::npos) << r;
  EXPECT_TRUE(c.call("vm.status")["result"]["agent"].is_null());
}

TEST(AgentProxyVm, SilentGuestTimesOutAndShutdownFailsWaitingRequests) {
  skip_without_kvm();
  Vm vm(true);
  auto c = vm.client();
  auto r = c.call("agent.ping", json{{"timeout_ms", 200}}, 10s, 5);
  EXPECT_EQ(r["error"]["code"], api::code::operation_failed) << r;
  EXPECT_EQ(r["error"]["data"]["method"], "agent.ping") << r;
  EXPECT_NE(r["error"]["message"].get<std::string>().find("within 200 ms"), std::string::npos) << r;
  auto s = c.call("vm.status")["result"]["agent"];
  EXPECT_TRUE(s["ready"].is_null()) << s;
  EXPECT_EQ(s["outstanding"], 0) << s;

  // A request left waiting (default timeout) is answered -32004 when the VM stops.
  auto waiting = vm.client();
  ASSERT_TRUE(waiting.send_line(R"({"jsonrpc":"2.0","id":77,"method":"agent.wpp.list"})"));
  for (int i = 0; i < 100 && c.call("vm.status")["result"]["agent"]["outstanding"] != 1; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(c.call("vm.shutdown")["result"]["state"], "stopping");
  std::string line;
  ASSERT_EQ(waiting.read_line(line, 10s), api::LineClient::ReadStatus::line);
  auto w = json::parse(line);
  EXPECT_EQ(w["id"], 77) << w;
  EXPECT_EQ(w["error"]["code"], api::code::shutting_down) << w;
  EXPECT_NE(w["error"]["message"].get<std::string>().find("agent.wpp.list: the VM stopped"), std::string::npos) << w;
  auto status = vm.run->wait(30s);
  ASSERT_TRUE(status) << vm.run->describe();
  EXPECT_EQ(*status, 0) << vm.run->describe();
}

}  // namespace
}  // namespace nvhv::test
