// AgentChannel against its two edges: guest output fed in as bytes, host->guest bytes captured
// from a fake inject function with a settable capacity, API replies through a real Dispatcher.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <optional>
#include <string>
#include <vector>

#include "vmm/agent_channel.hpp"

namespace nvhv {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

struct ChannelFixture : ::testing::Test {
  ChannelFixture() { make_channel(AgentChannel::Options{}); }
  // First: closing fails outstanding replies into `responses`, which must still exist.
  ~ChannelFixture() override { channel.reset(); }

  void make_channel(AgentChannel::Options options) {
    channel.reset();
    channel = std::make_unique<AgentChannel>(
        io,
        [this](std::span<const uint8_t> bytes) {
          const size_t n = std::min(bytes.size(), capacity);
          injected.append(reinterpret_cast<const char*>(bytes.data()), n);
          capacity -= n;
          return n;
        },
        options);
    dispatcher = std::make_unique<api::Dispatcher>();
    add_agent_methods(*dispatcher, channel.get());
    channel->set_notify([this](const std::string& m, const json& p) { notes.push_back({{"method", m}, {"params", p}}); });
  }

  // Sends an API request; the response (if any yet) lands in responses.
  void api(const json& request) {
    dispatcher->handle(request.dump(), [this](std::string msg) { responses.push_back(json::parse(msg)); });
  }
  void guest(const std::string& bytes) {
    channel->on_guest_output(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    io.poll();
    io.restart();
  }
  // The requests the guest has received so far, taken out of `injected`.
  std::vector<json> guest_requests() {
    std::vector<json> out;
    size_t nl;
    while ((nl = injected.find('\n')) != std::string::npos) {
      out.push_back(json::parse(injected.substr(0, nl)));
      injected.erase(0, nl + 1);
    }
    return out;
  }
  void run_for(std::chrono::milliseconds d) {
    io.run_for(d);
    io.restart();
  }

  boost::asio::io_context io;
  std::string injected;
  size_t capacity = SIZE_MAX;
  std::unique_ptr<AgentChannel> channel;
  std::unique_ptr<api::Dispatcher> dispatcher;
  std::vector<json> responses;
  std::vector<json> notes;
};

TEST_F(ChannelFixture, RelaysResultAndErrorByHostId) {
  api({{"jsonrpc", "2.0"}, {"id", 7}, {"method", "agent.ping"}});
  api({{"jsonrpc", "2.0"}, {"id", "x"}, {"method", "agent.wpp.stop"}, {"params", {{"id", "p9"}}}});
  auto reqs = guest_requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0]["method"], "agent.ping");
  EXPECT_FALSE(reqs[0].contains("params"));
  EXPECT_EQ(reqs[1]["params"], json({{"id", "p9"}}));
  EXPECT_TRUE(reqs[0]["id"].is_string());
  EXPECT_NE(reqs[0]["id"], reqs[1]["id"]);
  EXPECT_TRUE(responses.empty());
  // Answered out of order, the second in two pieces with CRLF: each reaches its own client id.
  const std::string err = json{{"jsonrpc", "2.0"}, {"id", reqs[1]["id"]}, {"error", {{"code", -32602}, {"message", "'id': no persistent process \"p9\""}}}}.dump();
  guest(err.substr(0, 10));
  guest(err.substr(10) + "\r\n");
  guest(json{{"jsonrpc", "2.0"}, {"id", reqs[0]["id"]}, {"result", {{"agent", "nvhv-agent"}}}}.dump() + "\n");
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0]["id"], "x");
  EXPECT_EQ(responses[0]["error"]["code"], -32602);
  EXPECT_EQ(responses[0]["error"]["message"], "'id': no persistent process \"p9\"");
  EXPECT_EQ(responses[1]["id"], 7);
  EXPECT_EQ(responses[1]["result"]["agent"], "nvhv-agent");
  EXPECT_EQ(channel->status().outstanding, 0u);
}

TEST_F(ChannelFixture, TimeoutNamesTheMethodAndIsStrippedFromParams) {
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.wpp.list"}, {"params", {{"timeout_ms", 50}}}});
  auto reqs = guest_requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["params"], json::object()) << "timeout_ms is the proxy's, not the agent's";
  run_for(20ms);
  EXPECT_TRUE(responses.empty());
  run_for(200ms);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0]["error"]["code"], api::code::operation_failed);
  EXPECT_NE(responses[0]["error"]["message"].get<std::string>().find("agent.wpp.list: no answer from the guest agent within 50 ms"), std::string::npos)
      << responses[0];
  // A late answer is an unknown id now: dropped, nothing else sent.
  guest(json{{"jsonrpc", "2.0"}, {"id", reqs[0]["id"]}, {"result", json::object()}}.dump() + "\n");
  EXPECT_EQ(responses.size(), 1u);
  EXPECT_EQ(channel->status().dropped_lines, 1u);
}

TEST_F(ChannelFixture, BadTimeoutIsRefusedNamingTheField) {
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.ping"}, {"params", {{"timeout_ms", 0}}}});
  api({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "agent.ping"}, {"params", {{"timeout_ms", "soon"}}}});
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0]["error"]["code"], api::code::invalid_params);
  EXPECT_NE(responses[0]["error"]["message"].get<std::string>().find("timeout_ms"), std::string::npos);
  EXPECT_NE(responses[1]["error"]["message"].get<std::string>().find("timeout_ms"), std::string::npos);
  EXPECT_TRUE(injected.empty());
}

TEST_F(ChannelFixture, HostileLinesAreDroppedNotFatal) {
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.ping"}});
  const auto id = guest_requests().at(0)["id"];
  guest("login: not json at all\n");
  guest("[1,2,3]\n\"str\"\n{\"jsonrpc\":\"2.0\",\"id\":\"nvhv-00000000-1\",\"result\":1}\n");
  guest("{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":1}\n");
  guest("{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"method\":\"agent.evil\"}\n");  // a request to the host
  guest(std::string(100, '[') + "\n");
  guest("{\"jsonrpc\":\"2.0\",\"method\":\"vm.shutdown\"}\n");  // only agent.* notifications pass
  EXPECT_TRUE(responses.empty());
  EXPECT_TRUE(notes.empty());
  EXPECT_EQ(channel->status().dropped_lines, 8u);
  // A malformed error object becomes an error of our own, naming the method.
  guest(json{{"jsonrpc", "2.0"}, {"id", id}, {"error", "boom"}}.dump() + "\n");
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0]["error"]["code"], api::code::operation_failed);
  EXPECT_NE(responses[0]["error"]["message"].get<std::string>().find("agent.ping"), std::string::npos);
}

TEST_F(ChannelFixture, OversizedLineIsSkippedAndTheStreamRecovers) {
  AgentChannel::Options o;
  o.max_line = 64;
  make_channel(o);
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.ping"}});
  const auto id = guest_requests().at(0)["id"];
  guest(std::string(50, 'a'));
  guest(std::string(50, 'b'));  // over the limit, not yet ended
  guest(std::string(500, 'c'));
  guest("d\n" + json{{"jsonrpc", "2.0"}, {"id", id}, {"result", "pong"}}.dump() + "\n");
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0]["result"], "pong");
  EXPECT_EQ(channel->status().dropped_lines, 1u);
}

TEST_F(ChannelFixture, ReadyNotificationIsRelayedAndRemembered) {
  EXPECT_FALSE(channel->status().ready_params);
  guest("{\"jsonrpc\":\"2.0\",\"method\":\"agent.ready\",\"params\":{\"restored\":[\"p1\"],\"failed\":[],\"dropped\":[]}}\n");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0]["method"], "agent.ready");
  EXPECT_EQ(notes[0]["params"]["restored"], json::array({"p1"}));
  auto s = channel->status();
  ASSERT_TRUE(s.ready_params);
  EXPECT_EQ((*s.ready_params)["restored"][0], "p1");
  EXPECT_LE(std::chrono::system_clock::now() - s.ready_at, 10s);
}

TEST_F(ChannelFixture, FullConsoleQueuesAndRetries) {
  capacity = 10;
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.wpp.start"}, {"params", {{"argv", json::array({"/bin/sleep", "1000"})}, {"interval_ms", 100}}}});
  EXPECT_EQ(injected.size(), 10u);
  EXPECT_GT(channel->status().queued_bytes, 0u);
  run_for(50ms);  // still full: nothing more goes in, nothing is lost
  EXPECT_EQ(injected.size(), 10u);
  capacity = SIZE_MAX;
  run_for(50ms);  // the retry timer delivers the rest
  EXPECT_EQ(channel->status().queued_bytes, 0u);
  auto reqs = guest_requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["params"]["argv"][1], "1000");
  EXPECT_TRUE(injected.empty());
}

TEST_F(ChannelFixture, OutstandingRequestsAreBounded) {
  AgentChannel::Options o;
  o.max_outstanding = 2;
  make_channel(o);
  for (int i = 1; i <= 3; ++i) api({{"jsonrpc", "2.0"}, {"id", i}, {"method", "agent.ping"}});
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0]["id"], 3);
  EXPECT_EQ(responses[0]["error"]["code"], api::code::busy);
  EXPECT_NE(responses[0]["error"]["message"].get<std::string>().find("agent.ping"), std::string::npos);
}

TEST_F(ChannelFixture, CloseFailsOutstandingRequests) {
  api({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "agent.wpp.checkpoint"}, {"params", {{"id", "p1"}}}});
  channel->close("the VM stopped");
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0]["error"]["code"], api::code::shutting_down);
  EXPECT_NE(responses[0]["error"]["message"].get<std::string>().find("agent.wpp.checkpoint: the VM stopped"), std::string::npos);
  api({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "agent.ping"}});
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[1]["error"]["code"], api::code::shutting_down);
}

TEST(AgentMethods, WithoutAConsoleTheErrorSaysSo) {
  api::Dispatcher d;
  add_agent_methods(d, nullptr);
  std::string out;
  d.handle(R"({"jsonrpc":"2.0","id":1,"method":"agent.ping"})", [&](std::string m) { out = std::move(m); });
  auto r = json::parse(out);
  EXPECT_EQ(r["error"]["code"], api::code::invalid_state);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("agent.ping: this VM has no virtio console"), std::string::npos);
}

}  // namespace
}  // namespace nvhv
