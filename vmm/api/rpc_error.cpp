#include "vmm/api/rpc_error.hpp"

namespace nvhv::api {

const char* default_message(int c) {
  switch (c) {
    case code::parse_error: return "Parse error";
    case code::invalid_request: return "Invalid Request";
    case code::method_not_found: return "Method not found";
    case code::invalid_params: return "Invalid params";
    case code::internal_error: return "Internal error";
    case code::invalid_state: return "VM not in a state for this request";
    case code::operation_failed: return "Operation failed";
    case code::busy: return "Busy";
    case code::too_large: return "Message too large";
    case code::shutting_down: return "Shutting down";
    default: return "Server error";
  }
}

}  // namespace nvhv::api
