#pragma once
// The agent's JSON-RPC methods (docs/agent.md). Everything arriving on the port is untrusted:
// each parameter is checked here and a bad one is answered with -32602 naming it.
#include "guest-images/agent/wpp_manager.hpp"
#include "vmm/api/jsonrpc.hpp"

namespace nvhv::agent {

void register_methods(api::Dispatcher& d, WppManager& wpp, const Store& store);
// Checked forms of agent.wpp.start's parameters; throw api::RpcError -32602.
std::vector<std::string> parse_argv(const nlohmann::json& v);
std::uint32_t parse_interval(const api::Params& p);

}  // namespace nvhv::agent
