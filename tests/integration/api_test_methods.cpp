#include "tests/integration/api_test_methods.hpp"

#include <chrono>
#include <stdexcept>

namespace nvhv::test {

using api::Params;
using api::Reply;
using nlohmann::json;

ApiTestMethods::ApiTestMethods(api::Dispatcher& d, Notify notify) : notify_(std::move(notify)) {
  d.add_method("echo", [](const Params& p, Reply r) { r.result(p.json()); });
  d.add_method("len", [](const Params& p, Reply r) { r.result(p.get<std::string>("s").size()); });
  d.add_method("sum", [](const Params& p, Reply r) {
    p.allow_only({"a", "b"});
    std::int64_t sum;
    if (__builtin_add_overflow(p.get<std::int64_t>("a"), p.get_or<std::int64_t>("b", 0), &sum))
      throw api::invalid_params("a + b overflows");
    r.result(sum);
  });
  d.add_method("later", [this](const Params& p, Reply r) {
    auto ms = p.get_or<int>("ms", 50);
    json value = p.get_or<json>("value", "late");
    spawn([r, ms, value] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      r.result(value);
    });
  });
  d.add_method("fail", [](const Params&, Reply) { throw api::RpcError(api::code::operation_failed, "it failed", {{"why", "test"}}); });
  d.add_method("busy", [](const Params&, Reply) { throw api::RpcError(api::code::busy, "a checkpoint is in progress"); });
  d.add_method("crash", [](const Params&, Reply) { throw std::runtime_error("test crash"); });
  d.add_method("drop", [](const Params&, Reply) {});
  d.add_method("blob", [](const Params& p, Reply r) { r.result(std::string(p.get<std::size_t>("bytes"), 'x')); });
  d.add_method("emit", [this](const Params& p, Reply r) {
    auto method = p.get<std::string>("method");
    json params = p.get_or<json>("params", nullptr);
    r.result(true);
    spawn([this, method, params] { notify_(method, params); });
  });
}

ApiTestMethods::~ApiTestMethods() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void ApiTestMethods::spawn(std::function<void()> work) {
  std::lock_guard lock(mu_);
  threads_.emplace_back(std::move(work));
}

}  // namespace nvhv::test
