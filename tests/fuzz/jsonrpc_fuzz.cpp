// libFuzzer target: the line framer and the dispatcher, with methods that validate params.
// Checks the protocol invariants on every output, not just the absence of crashes.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

#include "vmm/api/jsonrpc.hpp"

namespace {

using nlohmann::json;
using namespace nvhv::api;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                     \
    }                                                                   \
  } while (0)

void check_response(const json& r) {
  CHECK(r.is_object());
  CHECK(r.value("jsonrpc", "") == "2.0");
  CHECK(r.contains("id"));
  const json& id = r["id"];
  CHECK(id.is_null() || id.is_string() || id.is_number());
  CHECK(r.contains("result") != r.contains("error"));
  if (r.contains("error")) {
    CHECK(r["error"]["code"].is_number_integer());
    CHECK(r["error"]["message"].is_string());
  }
}

void check_message(const std::string& text) {
  CHECK(text.size() <= kMaxMessageBytes);
  CHECK(text.find('\n') == std::string::npos);  // one message, one line
  json m = json::parse(text);                   // throws (and so aborts) when not JSON
  if (m.is_array()) {
    CHECK(!m.empty());
    for (const auto& r : m) check_response(r);
  } else {
    check_response(m);
  }
}

struct Harness {
  Dispatcher d;
  std::vector<Reply> pending;

  Harness() {
    d.add_method("echo", [](const Params& p, Reply r) { r.result(p.json()); });
    d.add_method("sum", [](const Params& p, Reply r) {
      p.allow_only({"a", "b"});
      std::int64_t sum;
      if (__builtin_add_overflow(p.get<std::int64_t>("a"), p.get_or<std::int32_t>("b", 0), &sum))
        throw invalid_params("a + b overflows");
      r.result(sum);
    });
    d.add_method("pos", [](const Params& p, Reply r) {
      r.result(p.at<std::string>(0) + std::to_string(p.at<std::uint16_t>(1)) + (p.at<bool>(2) ? "!" : ""));
    });
    d.add_method("none", [](const Params& p, Reply r) {
      p.expect_none();
      r.result(nullptr);
    });
    d.add_method("opt", [](const Params& p, Reply r) {
      auto x = p.get_optional<double>("x");
      r.result(x ? *x : -1.0);
    });
    d.add_method("fail", [](const Params& p, Reply) {
      throw RpcError(p.get_or<int>("code", code::operation_failed), "fail", p.get_or<json>("data", nullptr));
    });
    d.add_method("later", [this](const Params&, Reply r) { pending.push_back(r); });
  }
};

Harness& harness() {
  static Harness h;
  return h;
}

// Feeds one message; checks the sink is called at most once, and exactly when promised.
void run_one(std::string_view message) {
  Harness& h = harness();
  int calls = 0;
  bool promised = h.d.handle(message, [&](std::string out) {
    ++calls;
    check_message(out);
  });
  for (std::size_t i = 0; i < h.pending.size(); ++i) {
    if (i % 2)
      h.pending[i].result(static_cast<int>(i));
    else
      h.pending[i].error(code::busy, "later");
  }
  h.pending.clear();
  CHECK(calls == (promised ? 1 : 0));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // Whole input as one message, newlines included (without any, the framed run below is the same).
  if (input.find('\n') != std::string_view::npos) run_one(input);
  // And as a stream of lines, with a small limit so the too-large path is reachable.
  LineFramer framer(4096);
  auto status = framer.feed(input, [](std::string_view line) {
    CHECK(line.size() <= 4096);
    CHECK(line.find('\n') == std::string_view::npos);
    run_one(line);
  });
  if (status == LineFramer::Status::too_large) CHECK(framer.feed("\n", [](std::string_view) { CHECK(false); }) == LineFramer::Status::too_large);
  return 0;
}
