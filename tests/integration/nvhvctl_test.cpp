// nvhvctl's output and exit codes, against api_test_server in its own process.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <regex>
#include <set>

#include "tests/support/child_process.hpp"
#include "vmm/api/jsonrpc.hpp"

namespace nvhv::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class NvhvctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{API_TEST_SERVER, socket_});
    ASSERT_TRUE(server_->wait_stdout(std::regex("^ready$"), 10s)) << server_->describe();
  }
  RunResult ctl(std::vector<std::string> args, std::chrono::milliseconds timeout = 10s) {
    args.insert(args.begin(), ctl_path_);
    return run_command(args, timeout);
  }

  TempDir dir_;
  std::string socket_ = dir_.file("api.sock");
  std::string ctl_path_ = build_dir() + "/bin/nvhvctl";
  std::unique_ptr<ChildProcess> server_;
};

TEST_F(NvhvctlTest, ResultOnStdoutExitZero) {
  auto r = ctl({"--socket", socket_, "vmm.ping"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "\"pong\"\n");

  r = ctl({"--socket", socket_, "echo", R"({"b":[1,2],"a":"x"})"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"a":"x","b":[1,2]})"));
  EXPECT_NE(r.out.find("\n  "), std::string::npos) << "expected indented output: " << r.out;

  r = ctl({"--socket", socket_, "--compact", "echo", "[1,{\"k\":2}]"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "[1,{\"k\":2}]\n");
}

TEST_F(NvhvctlTest, RpcErrorExitsOneWithTheErrorOnStderr) {
  auto r = ctl({"--socket", socket_, "fail"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("it failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-32001"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(R"({"why":"test"})"), std::string::npos) << r.err;

  r = ctl({"--socket", socket_, "no.such.method"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("-32601"), std::string::npos) << r.err;

  r = ctl({"--socket", socket_, "sum", R"({"a":true})"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("param 'a' must be an integer"), std::string::npos) << r.err;
}

TEST_F(NvhvctlTest, UsageErrorsExitTwo) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"--socket", socket_},                            // no method
           {"vmm.ping"},                                      // no socket
           {"--socket", socket_, "--bogus", "vmm.ping"},      // unknown option
           {"--socket", socket_, "echo", "{not json"},        // params not JSON
           {"--socket", socket_, "echo", "42"},               // params not object/array
           {"--socket", socket_, "--timeout-ms", "0", "vmm.ping"},
           {"--socket", socket_, "--follow", "vmm.ping"}}) {
    auto r = ctl(args);
    EXPECT_EQ(r.status, 2) << args.back() << "\n" << r.err;
    EXPECT_FALSE(r.err.empty());
  }
  auto help = ctl({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--follow"), std::string::npos) << help.out;
}

TEST_F(NvhvctlTest, CannotConnectExitsThree) {
  auto r = ctl({"--socket", dir_.file("nobody.sock"), "vmm.ping"});
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

TEST_F(NvhvctlTest, NoReplyInTimeExitsFour) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = ctl({"--socket", socket_, "--timeout-ms", "200", "later", R"({"ms":3000})"});
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms);
}

TEST_F(NvhvctlTest, FollowPrintsNotificationsUntilTheServerCloses) {
  ChildProcess follow({ctl_path_, "--socket", socket_, "--follow"});
  ASSERT_TRUE(follow.wait_stderr(std::regex("following notifications"), 10s)) << follow.describe();
  for (int i = 0; i < 3; ++i) {
    auto r = ctl({"--socket", socket_, "emit", json{{"method", "vm.state"}, {"params", {{"n", i}}}}.dump()});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  // Each emit notifies from its own thread, so the three may arrive in any order.
  std::set<int> seen;
  for (int i = 0; i < 3; ++i) {
    auto line = follow.wait_stdout(std::regex("vm\\.state"), 10s);
    ASSERT_TRUE(line) << follow.describe();
    json n = json::parse(*line);
    EXPECT_EQ(n["jsonrpc"], "2.0");
    EXPECT_FALSE(n.contains("id"));
    seen.insert(n["params"]["n"].get<int>());
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
  server_->signal(SIGTERM);
  EXPECT_EQ(server_->wait(10s), 0);
  EXPECT_EQ(follow.wait(10s), 0) << follow.describe();
}

}  // namespace
}  // namespace nvhv::test
