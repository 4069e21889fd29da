// The API server on a real Unix socket, driven by clients on real sockets.
#include "vmm/api/api_server.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "tests/integration/api_test_methods.hpp"
#include "tests/support/child_process.hpp"
#include "vmm/api/line_client.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::api {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test::TempDir;

json request(const std::string& method, const json& params = nullptr, const json& id = 1) {
  json r = {{"jsonrpc", "2.0"}, {"method", method}, {"id", id}};
  if (!params.is_null()) r["params"] = params;
  return r;
}

// Reads one line and parses it; fails the test on timeout or close.
json next(LineClient& c, std::chrono::milliseconds timeout = 5s) {
  std::string line;
  auto st = c.read_line(line, timeout);
  EXPECT_EQ(st, LineClient::ReadStatus::line);
  if (st != LineClient::ReadStatus::line) return nullptr;
  return json::parse(line);
}

void expect_error(const json& r, int code, const json& id) {
  ASSERT_TRUE(r.is_object() && r.contains("error")) << r.dump();
  EXPECT_EQ(r["error"]["code"], code) << r.dump();
  EXPECT_EQ(r["id"], id) << r.dump();
}

// Reads until the server closes, discarding data; false when it stays open past the timeout.
bool drains_to_close(LineClient& c, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = c.read_line(line, 100ms);
    if (st == LineClient::ReadStatus::closed) return true;
  }
  return false;
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    methods_ = std::make_unique<test::ApiTestMethods>(dispatcher_, [this](const std::string& m, const json& p) {
      server_->notify(m, p);
    });
  }
  void TearDown() override {
    methods_.reset();  // every late Reply is completed before the loop goes
    if (loop_.joinable()) {
      boost::asio::post(io_, [this] {
        server_->close();
        io_.stop();
      });
      loop_.join();
    }
    server_.reset();
  }
  void start(Server::Options options = {}) {
    server_ = std::make_unique<Server>(io_, path_, dispatcher_, options);
    loop_ = std::thread([this] { io_.run(); });
  }
  LineClient client() { return LineClient::connect(path_); }
  bool wait_connections(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (server_->connection_count() != n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  TempDir dir_;
  std::string path_ = dir_.file("api.sock");
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{io_.get_executor()};
  Dispatcher dispatcher_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<test::ApiTestMethods> methods_;
  std::thread loop_;
};

TEST_F(ApiServerTest, SocketIsPrivateAndBuiltinsAnswer) {
  start();
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto c = client();
  json r = c.call("vmm.ping");
  EXPECT_EQ(r["result"], "pong");
  r = c.call("vmm.version", nullptr, 5s, 2);
  EXPECT_EQ(r["result"]["api_version"], kApiVersion);
  EXPECT_EQ(r["result"]["name"], "nvhv");
  EXPECT_TRUE(r["result"]["version"].is_string());
  expect_error(c.call("vmm.ping", {{"x", 1}}, 5s, 3), code::invalid_params, 3);
}

TEST_F(ApiServerTest, EveryErrorCodeOverTheWire) {
  start();
  auto c = client();
  ASSERT_TRUE(c.send_line("{oops"));
  expect_error(next(c), code::parse_error, nullptr);
  ASSERT_TRUE(c.send_line("[]"));
  expect_error(next(c), code::invalid_request, nullptr);
  expect_error(c.call("no.such", nullptr, 5s, 3), code::method_not_found, 3);
  expect_error(c.call("sum", {{"a", "one"}}, 5s, 4), code::invalid_params, 4);
  expect_error(c.call("crash", nullptr, 5s, 5), code::internal_error, 5);
  expect_error(c.call("drop", nullptr, 5s, 6), code::internal_error, 6);
  json r = c.call("fail", nullptr, 5s, 7);
  expect_error(r, code::operation_failed, 7);
  EXPECT_EQ(r["error"]["data"]["why"], "test");
  expect_error(c.call("busy", nullptr, 5s, 8), code::busy, 8);
  EXPECT_EQ(c.call("sum", {{"a", 2}, {"b", 3}}, 5s, 9)["result"], 5);
}

TEST_F(ApiServerTest, BatchesAndNotificationsOverTheWire) {
  start();
  auto c = client();
  json batch = json::array({request("later", {{"ms", 50}, {"value", "slow"}}, 1), request("echo", {1}, 2),
                            json{{"jsonrpc", "2.0"}, {"method", "echo"}}, 7});
  ASSERT_TRUE(c.send_line(batch.dump()));
  json r = next(c);
  ASSERT_TRUE(r.is_array()) << r.dump();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0]["result"], "slow");
  EXPECT_EQ(r[1]["result"], json({1}));
  expect_error(r[2], code::invalid_request, nullptr);

  // No answer to notifications: the next line is the ping's.
  ASSERT_TRUE(c.send_line(R"([{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","method":"no.such"}])"));
  ASSERT_TRUE(c.send_line(R"({"jsonrpc":"2.0","method":"echo"})"));
  ASSERT_TRUE(c.send_line(request("vmm.ping", nullptr, 9).dump()));
  EXPECT_EQ(next(c)["id"], 9);
}

TEST_F(ApiServerTest, LateRepliesDoNotHoldUpOthers) {
  start();
  auto c = client();
  ASSERT_TRUE(c.send_line(request("later", {{"ms", 300}}, "slow").dump()));
  ASSERT_TRUE(c.send_line(request("vmm.ping", nullptr, "fast").dump()));
  EXPECT_EQ(next(c)["id"], "fast");
  EXPECT_EQ(next(c)["id"], "slow");
}

TEST_F(ApiServerTest, SplitAndCoalescedFramesAndCrlf) {
  start();
  auto c = client();
  std::string a = request("echo", {"a"}, 1).dump(), b = request("echo", {"b"}, 2).dump();
  ASSERT_TRUE(c.send_raw(a.substr(0, 10)));
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(c.send_raw(a.substr(10) + "\r\n\n" + b + "\n"));
  EXPECT_EQ(next(c)["result"], json({"a"}));
  EXPECT_EQ(next(c)["result"], json({"b"}));
}

TEST_F(ApiServerTest, MessageLimit) {
  start();
  // Exactly the limit is fine.
  std::string head = R"({"jsonrpc":"2.0","method":"len","id":1,"params":{"s":")", tail = "\"}}";
  std::string fill(kMaxMessageBytes - head.size() - tail.size(), 'y');
  auto c = client();
  ASSERT_TRUE(c.send_line(head + fill + tail));
  EXPECT_EQ(next(c)["result"], fill.size());

  // One byte more is refused, then the connection is closed.
  auto big = client();
  big.send_raw(head + fill + "y" + tail + "\n");  // the server may hang up before all of it is sent
  expect_error(next(big), code::too_large, nullptr);
  EXPECT_TRUE(drains_to_close(big, 5s));
  // Others are unaffected.
  EXPECT_EQ(c.call("vmm.ping", nullptr, 5s, 2)["result"], "pong");
}

TEST_F(ApiServerTest, HalfClosedClientStillGetsItsReplies) {
  start();
  auto c = client();
  ASSERT_TRUE(c.send_line(request("later", {{"ms", 100}}, 1).dump()));
  c.shutdown_write();
  EXPECT_EQ(next(c)["result"], "late");
  EXPECT_TRUE(drains_to_close(c, 5s));
}

TEST_F(ApiServerTest, StaleSocketIsReplaced) {
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd.get(), 1), 0);
  }  // closed without unlinking: what a crashed nvhv leaves behind
  ASSERT_THROW(LineClient::connect(path_), SystemError);
  start();
  EXPECT_EQ(client().call("vmm.ping")["result"], "pong");
}

TEST_F(ApiServerTest, LiveSocketIsRefusedAndNotTouched) {
  start();
  try {
    Server second(io_, path_, dispatcher_);
    FAIL() << "a second server took over a live socket";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.err(), EADDRINUSE);
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
  }
  EXPECT_EQ(client().call("vmm.ping")["result"], "pong");
}

TEST_F(ApiServerTest, NonSocketFileIsNeverReplaced) {
  { std::ofstream(path_) << "precious"; }
  EXPECT_THROW(Server(io_, path_, dispatcher_), SystemError);
  std::ifstream in(path_);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ApiServerTest, SocketFileRemovedOnlyWhileItIsOurs) {
  {
    Server s(io_, path_, dispatcher_);
    EXPECT_EQ(::access(path_.c_str(), F_OK), 0);
  }
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);

  auto first = std::make_unique<Server>(io_, path_, dispatcher_);
  ::unlink(path_.c_str());
  Server second(io_, path_, dispatcher_);
  first.reset();  // must not remove the second server's socket
  EXPECT_EQ(::access(path_.c_str(), F_OK), 0);
}

TEST_F(ApiServerTest, ManyClientsAtOnce) {
  start();
  constexpr int kClients = 16, kRequests = 1000;
  std::atomic<int> answered{0}, wrong{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto c = client();
      for (int j = 0; j < kRequests; ++j) {
        json r = c.call("echo", {{"client", i}, {"n", j}}, 10s, j);
        if (r["result"] == json{{"client", i}, {"n", j}})
          ++answered;
        else
          ++wrong;
      }
    });
  }
  for (auto& t : clients) t.join();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(answered, kClients * kRequests);
  EXPECT_EQ(wrong, 0);
  RecordProperty("requests_per_second", static_cast<int>(kClients * kRequests * 1000.0 / std::max<long>(ms, 1)));
  std::printf("%d clients x %d requests answered in %ld ms\n", kClients, kRequests, static_cast<long>(ms));
}

TEST_F(ApiServerTest, StalledClientIsDroppedWithoutBlockingOthers) {
  start();
  auto stalled = client();
  auto ok = client();
  ASSERT_TRUE(wait_connections(2));
  // 64 x 512 KiB of replies it never reads: far past the 16 MiB cap plus the socket buffers.
  std::string burst;
  for (int i = 0; i < 64; ++i) burst += request("blob", {{"bytes", 512 * 1024}}, i).dump() + "\n";
  ASSERT_TRUE(stalled.send_raw(burst));
  // The loop spends a moment encoding those replies, but must never wait on the stalled socket.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ok.call("vmm.ping", nullptr, 10s, i)["result"], "pong");
  EXPECT_TRUE(wait_connections(1)) << "the stalled client was not dropped";
  EXPECT_TRUE(drains_to_close(stalled, 10s));
  EXPECT_EQ(ok.call("vmm.ping", nullptr, 10s, 100)["result"], "pong");
}

TEST_F(ApiServerTest, NotificationsGoToSubscribersOnly) {
  start();
  auto a = client(), b = client(), c = client();
  EXPECT_EQ(a.call("vm.subscribe")["result"], json({{"subscribed", true}}));
  EXPECT_EQ(c.call("vm.subscribe")["result"], json({{"subscribed", true}}));
  EXPECT_EQ(c.call("vm.unsubscribe", nullptr, 5s, 2)["result"], json({{"subscribed", false}}));

  server_->notify("vm.state", {{"state", "paused"}});
  EXPECT_EQ(next(a), json({{"jsonrpc", "2.0"}, {"method", "vm.state"}, {"params", {{"state", "paused"}}}}));
  // Notifications are sent in order with everything else, so the next line b and c see is
  // their ping's answer only if nothing was sent to them before it.
  ASSERT_TRUE(b.send_line(request("vmm.ping", nullptr, 5).dump()));
  ASSERT_TRUE(c.send_line(request("vmm.ping", nullptr, 5).dump()));
  EXPECT_EQ(next(b)["id"], 5);
  EXPECT_EQ(next(c)["id"], 5);

  // From a handler's worker thread, as the VM will.
  EXPECT_EQ(b.call("emit", {{"method", "vm.checkpoint"}, {"params", {{"epoch", 7}}}}, 5s, 6)["result"], true);
  EXPECT_EQ(next(a)["params"]["epoch"], 7);
}

TEST_F(ApiServerTest, NotifyNeverBlocksTheCaller) {
  start();
  auto stalled = client();
  ASSERT_EQ(stalled.call("vm.subscribe")["result"]["subscribed"], true);
  json params = {{"pad", std::string(64 * 1024, 'n')}};
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 400; ++i) server_->notify("test.flood", params);  // 25 MiB, never read
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_TRUE(wait_connections(0)) << "the subscriber that never reads was not dropped";
}

TEST_F(ApiServerTest, CloseDisconnectsClientsAndRemovesTheSocket) {
  start();
  auto c = client();
  ASSERT_EQ(c.call("vmm.ping")["result"], "pong");
  std::promise<void> closed;
  boost::asio::post(io_, [&] {
    server_->close();
    closed.set_value();
  });
  closed.get_future().wait();
  EXPECT_TRUE(drains_to_close(c, 5s));
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
  EXPECT_THROW(LineClient::connect(path_), SystemError);
}

}  // namespace
}  // namespace nvhv::api
