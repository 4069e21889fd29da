#include "guest-images/agent/methods.hpp"

#include <unistd.h>

#include <fmt/core.h>

namespace nvhv::agent {

namespace {
constexpr std::size_t kMaxArgs = 256;
constexpr std::size_t kMaxArgBytes = 4096;
// Below ~10 ms a checkpoint (CRIU freezes the tree for tens of ms at least) would never end
// before the next is due; above an hour the caller surely meant something else.
constexpr std::uint32_t kMinIntervalMs = 10;
constexpr std::uint32_t kMaxIntervalMs = 3'600'000;
}  // namespace

std::vector<std::string> parse_argv(const nlohmann::json& v) {
  if (!v.is_array() || v.empty()) throw api::invalid_params("'argv' must be a non-empty array of strings");
  if (v.size() > kMaxArgs) throw api::invalid_params(fmt::format("'argv' has more than {} elements", kMaxArgs));
  std::vector<std::string> argv;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) throw api::invalid_params(fmt::format("'argv[{}]' must be a string, got {}", i, v[i].type_name()));
    auto s = v[i].get<std::string>();
    if (s.size() > kMaxArgBytes || s.find('\0') != std::string::npos)
      throw api::invalid_params(fmt::format("'argv[{}]' is longer than {} bytes or contains NUL", i, kMaxArgBytes));
    argv.push_back(std::move(s));
  }
  if (argv[0].empty()) throw api::invalid_params("'argv[0]' must not be empty");
  return argv;
}

std::uint32_t parse_interval(const api::Params& p) {
  auto ms = p.get<std::uint32_t>("interval_ms");
  if (ms < kMinIntervalMs || ms > kMaxIntervalMs)
    throw api::invalid_params(fmt::format("'interval_ms' must be between {} and {}", kMinIntervalMs, kMaxIntervalMs));
  return ms;
}

void register_methods(api::Dispatcher& d, WppManager& wpp, const Store& store) {
  d.add_method("agent.ping", [&store](const api::Params& p, api::Reply r) {
    p.expect_none();
    r.result({{"agent", "nvhv-agent"}, {"version", NVHV_VERSION}, {"pid", ::getpid()}, {"store", store.root()}});
  });
  d.add_method("agent.wpp.start", [&wpp](const api::Params& p, api::Reply r) {
    p.allow_only({"argv", "interval_ms"});
    ProcMeta meta;
    meta.argv = parse_argv(p.get<nlohmann::json>("argv"));
    meta.interval_ms = parse_interval(p);
    wpp.start(meta, std::move(r));
  });
  d.add_method("agent.wpp.list", [&wpp](const api::Params& p, api::Reply r) {
    p.expect_none();
    r.result(wpp.list());
  });
  d.add_method("agent.wpp.checkpoint", [&wpp](const api::Params& p, api::Reply r) {
    p.allow_only({"id"});
    wpp.checkpoint(p.get<std::string>("id"), std::move(r));
  });
  d.add_method("agent.wpp.stop", [&wpp](const api::Params& p, api::Reply r) {
    p.allow_only({"id"});
    r.result(wpp.stop(p.get<std::string>("id")));
  });
}

}  // namespace nvhv::agent
