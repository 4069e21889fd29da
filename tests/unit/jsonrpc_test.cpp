// The JSON-RPC codec and dispatcher, without sockets.
#include "vmm/api/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "vmm/base/error.hpp"

namespace nvhv::api {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Collects what the dispatcher sends, from any thread.
class Outbox {
 public:
  Dispatcher::Sink sink() {
    return [this](std::string m) {
      std::lock_guard lock(mu_);
      messages_.push_back(std::move(m));
      cv_.notify_all();
    };
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  json at(std::size_t i) {
    std::lock_guard lock(mu_);
    return json::parse(messages_.at(i));
  }
  std::string raw(std::size_t i) {
    std::lock_guard lock(mu_);
    return messages_.at(i);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> messages_;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    d.add_method("echo", [](const Params& p, Reply r) { r.result(p.json()); });
    d.add_method("sum", [](const Params& p, Reply r) {
      p.allow_only({"a", "b"});
      r.result(p.get<int>("a") + p.get_or<int>("b", 0));
    });
    d.add_method("fail", [](const Params&, Reply) { throw RpcError(code::busy, "already checkpointing", {{"since", 3}}); });
    d.add_method("config", [](const Params&, Reply) { throw ConfigError("memory: must be a multiple of 2 MiB"); });
    d.add_method("syscall", [](const Params&, Reply) { throw SystemError(ENOSPC, "write checkpoint"); });
    d.add_method("crash", [](const Params&, Reply) { throw std::runtime_error("boom"); });
    d.add_method("drop", [](const Params&, Reply) {});
    d.add_method("twice", [](const Params&, Reply r) {
      r.result(1);
      r.result(2);
      r.error(code::operation_failed, "three");
    });
    d.add_method("later", [this](const Params& p, Reply r) {
      int ms = p.get_or<int>("ms", 20);
      threads.emplace_back([r, ms] {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        r.result("late");
      });
    });
    d.add_method("drop_later", [this](const Params&, Reply r) {
      threads.emplace_back([r]() mutable {
        std::this_thread::sleep_for(20ms);
        r = Reply();  // the last copy goes away on this thread
      });
    });
    d.add_method("count", [this](const Params&, Reply r) {
      ++count;
      r.result(count);
    });
  }
  void TearDown() override {
    for (auto& t : threads) t.join();
  }
  json one(const std::string& line) {
    Outbox out;
    d.handle(line, out.sink());
    EXPECT_TRUE(out.wait_for(1)) << line;
    EXPECT_EQ(out.size(), 1u) << line;
    return out.at(0);
  }
  static void expect_error(const json& r, int code, const json& id = nullptr) {
    ASSERT_TRUE(r.contains("error")) << r.dump();
    EXPECT_EQ(r["error"]["code"], code) << r.dump();
    EXPECT_TRUE(r["error"]["message"].is_string()) << r.dump();
    EXPECT_EQ(r["id"], id) << r.dump();
    EXPECT_EQ(r["jsonrpc"], "2.0");
    EXPECT_FALSE(r.contains("result"));
  }

  Dispatcher d;
  std::vector<std::thread> threads;
  int count = 0;
};

TEST(LineFramer, SplitsChunksAndHandlesCrlfAndBlankLines) {
  LineFramer f(100);
  std::vector<std::string> lines;
  auto on = [&](std::string_view l) { lines.emplace_back(l); };
  EXPECT_EQ(f.feed("{\"a\"", on), LineFramer::Status::ok);
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(f.buffered(), 4u);
  EXPECT_EQ(f.feed(":1}\r\n\n  \r\n[2]\nx", on), LineFramer::Status::ok);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "[2]"}));
  EXPECT_EQ(f.feed("y\n", on), LineFramer::Status::ok);
  EXPECT_EQ(lines.back(), "xy");
}

TEST(LineFramer, LineAtTheLimitPassesOneByteMoreFailsForGood) {
  std::vector<std::string> lines;
  auto on = [&](std::string_view l) { lines.emplace_back(l); };
  LineFramer f(8);
  EXPECT_EQ(f.feed("12345678\n", on), LineFramer::Status::ok);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(f.feed("1234", on), LineFramer::Status::ok);
  EXPECT_EQ(f.feed("56789", on), LineFramer::Status::too_large);  // no newline needed to refuse
  EXPECT_EQ(f.feed("\nok\n", on), LineFramer::Status::too_large);
  EXPECT_EQ(lines.size(), 1u);

  LineFramer g(8);
  EXPECT_EQ(g.feed("ok\n123456789\nlater\n", on), LineFramer::Status::too_large);
  EXPECT_EQ(lines.back(), "ok");  // lines before the oversized one still count
}

TEST(NestingDepth, IgnoresBracketsInStrings) {
  EXPECT_EQ(nesting_depth(R"({"a":[1,{"b":"[[[[\"{{"}]})"), 3);
  EXPECT_EQ(nesting_depth("1"), 0);
  EXPECT_EQ(nesting_depth(std::string(1000, '['), 10), 10);
}

TEST_F(DispatcherTest, ResultEchoesEveryKindOfId) {
  for (const char* id : {"1", "\"abc\"", "-7", "2.5", "null", "18446744073709551615"}) {
    json r = one(std::string(R"({"jsonrpc":"2.0","method":"echo","params":[1,"x"],"id":)") + id + "}");
    EXPECT_EQ(r["id"], json::parse(id));
    EXPECT_EQ(r["result"], json::parse(R"([1,"x"])"));
    EXPECT_EQ(r["jsonrpc"], "2.0");
    EXPECT_FALSE(r.contains("error"));
  }
}

TEST_F(DispatcherTest, NotificationsRunButGetNoResponse) {
  Outbox out;
  EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"count"})", out.sink()));
  EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"no.such"})", out.sink()));
  EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"crash"})", out.sink()));
  EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"drop"})", out.sink()));
  EXPECT_EQ(count, 1);
  EXPECT_EQ(out.size(), 0u);
}

TEST_F(DispatcherTest, ParseErrors) {
  expect_error(one("{"), code::parse_error);
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","id":1)"), code::parse_error);
  expect_error(one("\"\xff\xfe\""), code::parse_error);  // invalid UTF-8
  expect_error(one("[1,2"), code::parse_error);
  expect_error(one("{} {}"), code::parse_error);  // two texts on one line
}

TEST_F(DispatcherTest, InvalidRequests) {
  expect_error(one("1"), code::invalid_request);
  expect_error(one("\"x\""), code::invalid_request);
  expect_error(one("null"), code::invalid_request);
  expect_error(one(R"({"method":"echo","id":1})"), code::invalid_request, 1);
  expect_error(one(R"({"jsonrpc":"1.0","method":"echo","id":1})"), code::invalid_request, 1);
  expect_error(one(R"({"jsonrpc":2.0,"method":"echo","id":1})"), code::invalid_request, 1);
  expect_error(one(R"({"jsonrpc":"2.0","id":1})"), code::invalid_request, 1);
  expect_error(one(R"({"jsonrpc":"2.0","method":5,"id":"a"})"), code::invalid_request, "a");
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","id":{"x":1}})"), code::invalid_request);
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","id":[1]})"), code::invalid_request);
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","id":true})"), code::invalid_request);
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","params":3,"id":9})"), code::invalid_request, 9);
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","params":"s","id":9})"), code::invalid_request, 9);
  // Invalid, so not a notification even without an id: the client learns about it.
  expect_error(one(R"({"jsonrpc":"2.0","method":1})"), code::invalid_request);
}

TEST_F(DispatcherTest, NestingLimit) {
  std::string ok = R"({"jsonrpc":"2.0","method":"echo","id":1,"params":)" + std::string(kMaxNestingDepth - 1, '[') +
                   std::string(kMaxNestingDepth - 1, ']') + "}";
  EXPECT_TRUE(one(ok).contains("result"));
  std::string deep = R"({"jsonrpc":"2.0","method":"echo","id":1,"params":)" + std::string(kMaxNestingDepth, '[') +
                     std::string(kMaxNestingDepth, ']') + "}";
  expect_error(one(deep), code::invalid_request);
}

TEST_F(DispatcherTest, MethodNotFound) {
  json r = one(R"({"jsonrpc":"2.0","method":"vm.nope","id":"q"})");
  expect_error(r, code::method_not_found, "q");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("vm.nope"), std::string::npos);
}

TEST_F(DispatcherTest, HandlerErrorsMapToCodes) {
  json r = one(R"({"jsonrpc":"2.0","method":"fail","id":1})");
  expect_error(r, code::busy, 1);
  EXPECT_EQ(r["error"]["message"], "already checkpointing");
  EXPECT_EQ(r["error"]["data"], json({{"since", 3}}));

  r = one(R"({"jsonrpc":"2.0","method":"config","id":2})");
  expect_error(r, code::invalid_params, 2);
  EXPECT_EQ(r["error"]["message"], "memory: must be a multiple of 2 MiB");

  r = one(R"({"jsonrpc":"2.0","method":"syscall","id":3})");
  expect_error(r, code::operation_failed, 3);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("write checkpoint"), std::string::npos);

  r = one(R"({"jsonrpc":"2.0","method":"crash","id":4})");
  expect_error(r, code::internal_error, 4);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("boom"), std::string::npos);
  EXPECT_FALSE(r["error"].contains("data"));
}

TEST_F(DispatcherTest, InvalidParamsNameTheParam) {
  auto msg = [&](const std::string& params) {
    json r = one(R"({"jsonrpc":"2.0","method":"sum","id":1,"params":)" + params + "}");
    expect_error(r, code::invalid_params, 1);
    return r["error"]["message"].get<std::string>();
  };
  EXPECT_EQ(one(R"({"jsonrpc":"2.0","method":"sum","id":1,"params":{"a":2,"b":3}})")["result"], 5);
  EXPECT_EQ(msg("{}"), "missing param 'a'");
  EXPECT_EQ(msg(R"({"a":"2"})"), "param 'a' must be an integer, not a string");
  EXPECT_EQ(msg(R"({"a":2.5})"), "param 'a' must be an integer, not a number");
  EXPECT_EQ(msg(R"({"a":1,"b":true})"), "param 'b' must be an integer, not a boolean");
  EXPECT_EQ(msg(R"({"a":1,"c":1})"), "unknown param 'c'");
  EXPECT_EQ(msg(R"({"a":4294967296})"), "param 'a' must be an integer from -2147483648 to 2147483647");
  EXPECT_EQ(msg("[1,2]"), "params must be an object of named members");
}

TEST(Params, Accessors) {
  Params none;
  EXPECT_TRUE(none.absent());
  EXPECT_NO_THROW(none.expect_none());
  EXPECT_NO_THROW(Params(json::object()).expect_none());
  EXPECT_NO_THROW(Params(json::array()).expect_none());
  EXPECT_THROW(Params(json{{"x", 1}}).expect_none(), RpcError);
  EXPECT_EQ(none.get_or<std::string>("mode", "fast"), "fast");

  Params named(json{{"n", -1}, {"flag", true}, {"name", "vm0"}, {"ratio", 1}, {"nothing", nullptr}});
  EXPECT_EQ(named.get<bool>("flag"), true);
  EXPECT_EQ(named.get<std::string>("name"), "vm0");
  EXPECT_EQ(named.get<double>("ratio"), 1.0);
  EXPECT_EQ(named.get<json>("n"), -1);
  EXPECT_FALSE(named.get_optional<int>("nothing"));
  EXPECT_EQ(named.get_optional<int>("n"), -1);
  try {
    named.get<unsigned>("n");
    FAIL() << "negative accepted as unsigned";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), code::invalid_params);
    EXPECT_STREQ(e.what(), "param 'n' must be an integer from 0 to 4294967295");
  }

  Params positional(json{7, "x"});
  EXPECT_EQ(positional.at<std::uint8_t>(0), 7);
  EXPECT_EQ(positional.at<std::string>(1), "x");
  try {
    positional.at<int>(2);
    FAIL();
  } catch (const RpcError& e) {
    EXPECT_STREQ(e.what(), "missing param #2");
  }
  try {
    positional.at<std::string>(0);
    FAIL();
  } catch (const RpcError& e) {
    EXPECT_STREQ(e.what(), "param '#0' must be a string, not an integer");
  }
}

TEST_F(DispatcherTest, EmptyBatchIsOneError) {
  json r = one("[]");
  EXPECT_TRUE(r.is_object());
  expect_error(r, code::invalid_request);
}

TEST_F(DispatcherTest, BatchOfNonObjectsGivesOneErrorEach) {
  json r = one("[1,2,3]");
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.size(), 3u);
  for (auto& e : r) expect_error(e, code::invalid_request);
}

TEST_F(DispatcherTest, MixedBatch) {
  json r = one(R"([
    {"jsonrpc":"2.0","method":"sum","params":{"a":1,"b":2},"id":"1"},
    {"jsonrpc":"2.0","method":"count"},
    {"jsonrpc":"2.0","method":"sum","params":{"a":40},"id":"2"},
    {"foo":"boo"},
    {"jsonrpc":"2.0","method":"foo.get","id":"5"},
    {"jsonrpc":"2.0","method":"no.such"},
    {"jsonrpc":"2.0","method":"later","id":"9"}
  ])");
  ASSERT_TRUE(r.is_array()) << r.dump();
  ASSERT_EQ(r.size(), 5u) << r.dump();
  EXPECT_EQ(r[0], json({{"jsonrpc", "2.0"}, {"id", "1"}, {"result", 3}}));
  EXPECT_EQ(r[1]["result"], 40);
  expect_error(r[2], code::invalid_request);
  expect_error(r[3], code::method_not_found, "5");
  EXPECT_EQ(r[4]["result"], "late");
  EXPECT_EQ(count, 1);
}

TEST_F(DispatcherTest, BatchOfNotificationsSendsNothing) {
  Outbox out;
  EXPECT_FALSE(d.handle(R"([{"jsonrpc":"2.0","method":"count"},{"jsonrpc":"2.0","method":"count","params":[]}])",
                        out.sink()));
  EXPECT_EQ(count, 2);
  EXPECT_EQ(out.size(), 0u);
}

TEST_F(DispatcherTest, BatchWaitsForItsSlowestReply) {
  Outbox out;
  EXPECT_TRUE(d.handle(
      R"([{"jsonrpc":"2.0","method":"later","params":{"ms":150},"id":1},{"jsonrpc":"2.0","method":"echo","id":2}])",
      out.sink()));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(out.size(), 0u);  // the immediate reply is held back
  ASSERT_TRUE(out.wait_for(1));
  json r = out.at(0);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0]["result"], "late");
  EXPECT_EQ(r[1]["id"], 2);
}

TEST_F(DispatcherTest, ReplyLaterFromAnotherThread) {
  Outbox out;
  EXPECT_TRUE(d.handle(R"({"jsonrpc":"2.0","method":"later","params":{"ms":30},"id":7})", out.sink()));
  EXPECT_EQ(out.size(), 0u);
  ASSERT_TRUE(out.wait_for(1));
  EXPECT_EQ(out.at(0), json({{"jsonrpc", "2.0"}, {"id", 7}, {"result", "late"}}));
}

TEST_F(DispatcherTest, DroppedReplyAnswersInternalError) {
  expect_error(one(R"({"jsonrpc":"2.0","method":"drop","id":1})"), code::internal_error, 1);
  expect_error(one(R"({"jsonrpc":"2.0","method":"drop_later","id":2})"), code::internal_error, 2);
}

TEST_F(DispatcherTest, OnlyTheFirstCompletionCounts) {
  Outbox out;
  d.handle(R"({"jsonrpc":"2.0","method":"twice","id":1})", out.sink());
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(0)["result"], 1);
}

TEST_F(DispatcherTest, ReplyCopiesShareOneCompletion) {
  Reply kept;
  d.add_method("keep", [&](const Params&, Reply r) { kept = r; });
  Outbox out;
  d.handle(R"({"jsonrpc":"2.0","method":"keep","id":1})", out.sink());
  Reply copy = kept;
  EXPECT_FALSE(copy.done());
  EXPECT_EQ(copy.method(), "keep");
  EXPECT_FALSE(copy.is_notification());
  kept.error(code::invalid_state, "paused");
  EXPECT_TRUE(copy.done());
  copy.result("ignored");
  kept = Reply();
  copy = Reply();
  ASSERT_EQ(out.size(), 1u);
  expect_error(out.at(0), code::invalid_state, 1);
}

TEST_F(DispatcherTest, OversizedMessageAndResponse) {
  expect_error(one(std::string(kMaxMessageBytes + 1, ' ')), code::too_large);
  d.add_method("huge", [](const Params&, Reply r) { r.result(std::string(kMaxMessageBytes, 'x')); });
  expect_error(one(R"({"jsonrpc":"2.0","method":"huge","id":5})"), code::too_large, 5);
  // Each element fits, the array does not.
  d.add_method("half", [](const Params&, Reply r) { r.result(std::string(kMaxMessageBytes / 2, 'x')); });
  json r = one(R"([{"jsonrpc":"2.0","method":"half","id":1},{"jsonrpc":"2.0","method":"half","id":2}])");
  expect_error(r, code::too_large);
}

TEST_F(DispatcherTest, InvalidUtf8InAResultIsReplacedNotThrown) {
  d.add_method("bytes", [](const Params&, Reply r) { r.result(std::string("a\xff" "b")); });
  json r = one(R"({"jsonrpc":"2.0","method":"bytes","id":1})");
  EXPECT_EQ(r["result"], "a\xEF\xBF\xBD" "b");
}

TEST_F(DispatcherTest, MethodRegistry) {
  EXPECT_THROW(d.add_method("echo", [](const Params&, Reply) {}), std::logic_error);
  d.set_method("echo", [](const Params&, Reply r) { r.result("replaced"); });
  EXPECT_EQ(one(R"({"jsonrpc":"2.0","method":"echo","id":1})")["result"], "replaced");
  EXPECT_TRUE(d.remove_method("echo"));
  EXPECT_FALSE(d.has_method("echo"));
  EXPECT_FALSE(d.remove_method("echo"));
  expect_error(one(R"({"jsonrpc":"2.0","method":"echo","id":1})"), code::method_not_found, 1);
}

class FakePeer : public Peer {
 public:
  std::uint64_t id() const override { return 42; }
  void set_subscribed(bool on) override { on_ = on; }
  bool subscribed() const override { return on_; }

 private:
  bool on_ = false;
};

TEST_F(DispatcherTest, HandlersSeeTheirPeerWhileItLives) {
  Reply kept;
  d.add_method("whoami", [&](const Params&, Reply r) {
    kept = r;
    r.result(r.peer() ? r.peer()->id() : 0);
  });
  auto peer = std::make_shared<FakePeer>();
  Outbox out;
  d.handle(R"({"jsonrpc":"2.0","method":"whoami","id":1})", out.sink(), peer);
  EXPECT_EQ(out.at(0)["result"], 42);
  peer.reset();
  EXPECT_EQ(kept.peer(), nullptr);  // a kept Reply does not keep the connection alive
  d.handle(R"({"jsonrpc":"2.0","method":"whoami","id":2})", out.sink());
  EXPECT_EQ(out.at(1)["result"], 0);
}

TEST(Messages, NotificationAndErrorShapes) {
  EXPECT_EQ(json::parse(make_notification("vm.state", {{"state", "paused"}})),
            json({{"jsonrpc", "2.0"}, {"method", "vm.state"}, {"params", {{"state", "paused"}}}}));
  EXPECT_FALSE(json::parse(make_notification("vm.tick")).contains("params"));
  json e = make_error(3, code::shutting_down, "");
  EXPECT_EQ(e["error"]["message"], "Shutting down");
  EXPECT_FALSE(e["error"].contains("data"));
  json t = json::parse(too_large_error());
  EXPECT_EQ(t["error"]["code"], code::too_large);
  EXPECT_TRUE(t["id"].is_null());
}

TEST(Reply, DefaultConstructedCompletesIntoNothing) {
  Reply r;
  r.result(1);
  EXPECT_FALSE(r.done());
  EXPECT_TRUE(r.is_notification());
  EXPECT_EQ(r.peer(), nullptr);
}

}  // namespace
}  // namespace nvhv::api
