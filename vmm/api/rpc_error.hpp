#pragma once
// JSON-RPC error codes used by nvhv and the exception handlers throw to report one.
// docs/api.md lists the same codes for clients; keep the two in step.
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace nvhv::api {

namespace code {
// Defined by JSON-RPC 2.0.
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
// nvhv's own, in the range the spec reserves for implementation-defined server errors.
inline constexpr int invalid_state = -32000;     // the VM is not in a state where this request makes sense
inline constexpr int operation_failed = -32001;  // the request was valid but carrying it out failed
inline constexpr int busy = -32002;              // the same kind of request is already in progress
inline constexpr int too_large = -32003;         // a message (request or response) exceeds the size limit
inline constexpr int shutting_down = -32004;     // the server or VM is going away; retrying will not help
}  // namespace code

// The standard message for a code ("Invalid params", ...), or "Server error" for others.
const char* default_message(int code);

// Thrown by a handler (or anything it calls) to fail the request with this code.
// `data`, when not null, is sent as the error object's "data" member.
class RpcError : public std::runtime_error {
 public:
  RpcError(int code, const std::string& message, nlohmann::json data = nullptr)
      : std::runtime_error(message), code_(code), data_(std::move(data)) {}
  int code() const { return code_; }
  const nlohmann::json& data() const { return data_; }

 private:
  int code_;
  nlohmann::json data_;
};

// -32602 with a message that names the parameter, e.g. invalid_params("'force' must be a boolean").
inline RpcError invalid_params(const std::string& message, nlohmann::json data = nullptr) {
  return RpcError(code::invalid_params, message, std::move(data));
}

}  // namespace nvhv::api
