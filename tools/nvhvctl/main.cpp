// nvhvctl: one JSON-RPC call to a running nvhv, or a stream of its notifications.
// Exit status: 0 ok, 1 the server answered with an error, 2 usage, 3 cannot connect,
// 4 no answer (timeout, connection lost, malformed reply). docs/api.md has the details.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "tools/nvhvctl/fleet.hpp"
#include "vmm/api/line_client.hpp"
#include "vmm/base/error.hpp"

namespace {

using nlohmann::json;
using nvhv::api::LineClient;

enum Exit { kOk = 0, kRpcError = 1, kUsage = 2, kNoConnect = 3, kNoAnswer = 4 };

struct Options {
  std::string socket;
  std::string method;
  std::string params_text;
  bool follow = false;
  bool compact = false;
  int timeout_ms = 30000;
};

void print_line(FILE* f, const std::string& text) {
  std::fputs(text.c_str(), f);
  std::fputc('\n', f);
  std::fflush(f);
}

int report_error(const std::string& method, const json& error) {
  std::string message = error.value("message", std::string("(no message)"));
  int code = error.value("code", 0);
  print_line(stderr, fmt::format("nvhvctl: {} failed: {} (code {})", method, message, code));
  if (error.contains("data")) print_line(stderr, "nvhvctl: data: " + nvhv::api::encode(error["data"]));
  return kRpcError;
}

int call(LineClient& client, const Options& o, const json& params) {
  json response;
  try {
    response = client.call(o.method, params, std::chrono::milliseconds(o.timeout_ms));
  } catch (const std::exception& e) {
    print_line(stderr, fmt::format("nvhvctl: {}: {}", o.method, e.what()));
    return kNoAnswer;
  }
  if (response.contains("error")) return report_error(o.method, response["error"]);
  print_line(stdout, response["result"].dump(o.compact ? -1 : 2, ' ', false, json::error_handler_t::replace));
  return kOk;
}

int follow(LineClient& client, const Options& o) {
  Options sub = o;
  sub.method = "vm.subscribe";
  json response;
  try {
    response = client.call(sub.method, nullptr, std::chrono::milliseconds(o.timeout_ms));
  } catch (const std::exception& e) {
    print_line(stderr, fmt::format("nvhvctl: vm.subscribe: {}", e.what()));
    return kNoAnswer;
  }
  if (response.contains("error")) return report_error(sub.method, response["error"]);
  // Tells a person (or a script waiting on stderr) that nothing will be missed from now on.
  print_line(stderr, "nvhvctl: following notifications on " + o.socket);
  for (;;) {
    std::string line;
    switch (client.read_line(line, std::chrono::hours(1))) {
      case LineClient::ReadStatus::line: break;
      case LineClient::ReadStatus::timeout: continue;
      case LineClient::ReadStatus::closed: return kOk;
      case LineClient::ReadStatus::too_large:
        print_line(stderr, "nvhvctl: the server sent a line over the size limit");
        return kNoAnswer;
    }
    json msg = json::parse(line, nullptr, false);
    if (msg.is_object() && msg.contains("method") && !msg.contains("id")) print_line(stdout, nvhv::api::encode(msg));
  }
}

}  // namespace

int main(int argc, char** argv) {
  // `nvhvctl fleet ...` works on every VM of the host registry instead of one socket (docs/fleet.md).
  if (argc > 1 && std::string(argv[1]) == "fleet") return nvhvctl::fleet_main(argc - 1, argv + 1);
  Options o;
  CLI::App app{"Talks to a running nvhv over its JSON-RPC API socket.\n"
               "  nvhvctl --socket PATH METHOD [PARAMS_JSON]   one call; prints the result as JSON\n"
               "  nvhvctl --socket PATH --follow               prints notifications, one per line\n"
               "  nvhvctl fleet list|power-fail|resume         every VM of the host registry (docs/fleet.md)",
               "nvhvctl"};
  app.add_option("-s,--socket", o.socket, "API socket of the nvhv instance")->envname("NVHV_API_SOCKET")->required();
  auto* method = app.add_option("method", o.method, "method to call, e.g. vmm.ping or vm.status");
  auto* params = app.add_option("params", o.params_text, "params as a JSON object or array");
  auto* follow_flag = app.add_flag("-f,--follow", o.follow, "subscribe and print notifications until the server closes");
  app.add_flag("-c,--compact", o.compact, "print the result on one line instead of indented");
  app.add_option("-t,--timeout-ms", o.timeout_ms, "how long to wait for the reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 3600 * 1000));
  follow_flag->excludes(method)->excludes(params);
  params->needs(method);

  try {
    app.parse(argc, argv);
    if (!o.follow && o.method.empty()) throw CLI::RequiredError("method (or --follow)");
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsage;
  }

  json params_json;
  if (!o.params_text.empty()) {
    params_json = json::parse(o.params_text, nullptr, false);
    if (params_json.is_discarded() || !(params_json.is_object() || params_json.is_array())) {
      print_line(stderr, "nvhvctl: params must be a JSON object or array: " + o.params_text);
      return kUsage;
    }
  }

  std::optional<LineClient> client;
  try {
    client.emplace(LineClient::connect(o.socket));
  } catch (const nvhv::ConfigError& e) {
    print_line(stderr, fmt::format("nvhvctl: {}", e.what()));
    return kUsage;
  } catch (const std::exception& e) {
    print_line(stderr, fmt::format("nvhvctl: cannot connect: {}", e.what()));
    return kNoConnect;
  }
  return o.follow ? follow(*client, o) : call(*client, o, params_json);
}
