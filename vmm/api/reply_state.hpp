#pragma once
// Internal: what all copies of one Reply share. Only jsonrpc.cpp and reply.cpp include this.
#include <atomic>
#include <functional>

#include "vmm/api/reply.hpp"

namespace nvhv::api::detail {

struct ReplyState {
  nlohmann::json id;
  std::string method;
  // Weak: a Reply kept by VM code must not keep a closed connection (and its socket) alive.
  std::weak_ptr<Peer> peer;
  bool notification = false;
  // Takes the finished response object; empty for notifications. Called at most once.
  std::function<void(nlohmann::json response)> deliver;
  std::atomic<bool> done{false};

  ReplyState() = default;
  ReplyState(const ReplyState&) = delete;
  ReplyState& operator=(const ReplyState&) = delete;
  // The last copy of the Reply is gone: a client waiting for an answer must not hang.
  ~ReplyState();

  void complete(nlohmann::json response);
};

}  // namespace nvhv::api::detail
