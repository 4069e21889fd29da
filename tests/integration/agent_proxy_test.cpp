// agent.* through the real API socket and a real virtio-console: an API client on the Unix
// socket, the Server and AgentChannel on an event-loop thread, and a fake guest agent on its own
// thread that drives the console's virtqueues as Linux's virtio_console would (receive buffers
// posted on receiveq, output chains on transmitq). The real agent in a Linux guest is tier 2's.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <map>
#include <thread>

#include "devices/virtio/virtio_spec.hpp"
#include "tests/support/child_process.hpp"
#include "tests/unit/virtio_test_driver.hpp"
#include "vmm/agent_channel.hpp"
#include "vmm/api/api_server.hpp"
#include "vmm/api/line_client.hpp"

namespace nvhv::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFRingEventIdx;
constexpr uint32_t kRxBuffers = 16, kRxBufferBytes = 512;

// Answers agent.ping and agent.wpp.start with their params echoed back, agent.wpp.list with an
// error, and never answers agent.wpp.checkpoint (so the host's timeout shows).
class FakeGuestAgent {
 public:
  FakeGuestAgent(Rig& rig) : r_(rig), d_(rig.g, rig.con_slot) {
    auto vqs = d_.start(kFeatures, 2);
    rx_ = vqs[0];
    tx_ = vqs[1];
    for (uint32_t i = 0; i < kRxBuffers; ++i) post_rx(r_.g.alloc(kRxBufferBytes));
    d_.notify(rx_);
  }
  ~FakeGuestAgent() { stop(); }

  void start() {
    thread_ = std::thread([this] {
      send(json{{"jsonrpc", "2.0"}, {"method", "agent.ready"}, {"params", {{"restored", json::array({"p1"})}, {"failed", json::array()}, {"dropped", json::array()}}}});
      while (!stop_) {
        if (!poll()) std::this_thread::sleep_for(1ms);
      }
    });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t bytes_received() const { return received_; }

 private:
  void post_rx(uint64_t gpa) {
    const uint16_t head = d_.add_chain(rx_, {{gpa, kRxBufferBytes, true}});
    buffers_[head] = gpa;
  }
  bool poll() {
    bool any = false;
    while (auto used = d_.take_used(rx_)) {
      any = true;
      const uint64_t gpa = buffers_.at(static_cast<uint16_t>(used->id));
      const uint8_t* p = r_.g.memory.checked_range(gpa, used->len);
      input_.append(p, p + used->len);
      received_ += used->len;
      post_rx(gpa);
      d_.notify(rx_);
    }
    size_t nl;
    while ((nl = input_.find('\n')) != std::string::npos) {
      auto req = json::parse(input_.substr(0, nl));
      input_.erase(0, nl + 1);
      answer(req);
    }
    return any;
  }
  void answer(const json& req) {
    const std::string m = req["method"];
    json params = req.contains("params") ? req["params"] : json(nullptr);
    if (m == "agent.ping" || m == "agent.wpp.start")
      send({{"jsonrpc", "2.0"}, {"id", req["id"]}, {"result", {{"agent", "fake"}, {"echo", params}}}});
    else if (m == "agent.wpp.list")
      send({{"jsonrpc", "2.0"}, {"id", req["id"]}, {"error", {{"code", -32602}, {"message", "'x' is bad"}, {"data", {{"k", 1}}}}}});
  }
  // Guest output, split over chains of at most 700 bytes as a tty would write it.
  void send(const json& msg) {
    const std::string line = msg.dump() + "\n";
    for (size_t off = 0; off < line.size(); off += 700) {
      const size_t n = std::min<size_t>(700, line.size() - off);
      const uint64_t a = r_.g.alloc(n, 1);
      r_.g.memory.write(a, std::span(reinterpret_cast<const uint8_t*>(line.data() + off), n));
      d_.add_chain(tx_, {{a, static_cast<uint32_t>(n), false}});
      d_.notify(tx_);
      while (d_.take_used(tx_)) {
      }
    }
  }

  Rig& r_;
  Driver d_;
  Vq rx_, tx_;
  std::map<uint16_t, uint64_t> buffers_;
  std::string input_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

struct AgentProxy : ::testing::Test {
  AgentProxy() : guest(rig) {
    channel = std::make_unique<AgentChannel>(
        io, [c = rig.con.get()](std::span<const uint8_t> b) { return c->inject_input(b); }, AgentChannel::Options{});
    rig.con->set_output([ch = channel.get()](std::span<const uint8_t> b) { ch->on_guest_output(b); });
    add_agent_methods(dispatcher, channel.get());
    server = std::make_unique<api::Server>(io, dir.file("api.sock"), dispatcher);
    channel->set_notify([s = server.get()](const std::string& m, const json& p) { s->notify(m, p); });
    loop = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  ~AgentProxy() override {
    guest.stop();
    io.stop();
    loop.join();
    channel.reset();  // fails what is still outstanding, before the server goes
    server.reset();
  }

  TempDir dir;
  Rig rig;
  FakeGuestAgent guest;
  boost::asio::io_context io;
  api::Dispatcher dispatcher;
  std::unique_ptr<AgentChannel> channel;
  std::unique_ptr<api::Server> server;
  std::thread loop;
};

TEST_F(AgentProxy, ReadyNotificationAndPingRoundTrip) {
  auto client = api::LineClient::connect(dir.file("api.sock"));
  EXPECT_EQ(client.call("vm.subscribe")["result"]["subscribed"], true);
  guest.start();
  std::string line;
  ASSERT_EQ(client.read_line(line, 10s), api::LineClient::ReadStatus::line);
  auto note = json::parse(line);
  EXPECT_EQ(note["method"], "agent.ready");
  EXPECT_EQ(note["params"]["restored"], json::array({"p1"}));
  EXPECT_FALSE(note.contains("id"));

  auto r = client.call("agent.ping", json{{"timeout_ms", 5000}}, 10s, 41);
  EXPECT_EQ(r["id"], 41);
  EXPECT_EQ(r["result"]["agent"], "fake");
  EXPECT_EQ(r["result"]["echo"], json::object()) << "timeout_ms must not reach the guest";
  ASSERT_TRUE(channel->status().ready_params);
}

TEST_F(AgentProxy, GuestErrorsAreRelayedAndSilenceTimesOut) {
  guest.start();
  auto client = api::LineClient::connect(dir.file("api.sock"));
  auto e = client.call("agent.wpp.list", nullptr, 10s, 2);
  EXPECT_EQ(e["error"]["code"], -32602);
  EXPECT_EQ(e["error"]["message"], "'x' is bad");
  EXPECT_EQ(e["error"]["data"]["k"], 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto t = client.call("agent.wpp.checkpoint", json{{"id", "p1"}, {"timeout_ms", 300}}, 10s, 3);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_EQ(t["error"]["code"], api::code::operation_failed);
  EXPECT_NE(t["error"]["message"].get<std::string>().find("agent.wpp.checkpoint: no answer from the guest agent within 300 ms"), std::string::npos) << t;
}

TEST_F(AgentProxy, RequestLargerThanTheConsoleBufferIsQueuedAndDelivered) {
  guest.start();
  auto client = api::LineClient::connect(dir.file("api.sock"));
  // Several times VirtioConsole::kMaxPendingInput and the posted receive buffers together: the
  // channel must hold the rest back and feed it in as the guest drains the queue.
  std::string big(40'000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  auto r = client.call("agent.wpp.start", json{{"argv", json::array({"/bin/echo", big})}, {"interval_ms", 100}}, 20s, 9);
  ASSERT_TRUE(r.contains("result")) << r.dump().substr(0, 300);
  EXPECT_EQ(r["result"]["echo"]["argv"][1], big);
  EXPECT_GT(guest.bytes_received(), 40'000u);
  EXPECT_EQ(channel->status().queued_bytes, 0u);
}

}  // namespace
}  // namespace nvhv::test
