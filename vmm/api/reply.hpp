#pragma once
// The answer channel handed to each method handler. A handler may complete it at once, or
// keep a copy and complete it later from any thread (vm.power_fail answers only once the
// checkpoint has committed). Whatever the handler does, the client gets exactly one answer:
// the first completion wins, later ones are logged and ignored, and if every copy is dropped
// without completing, the client gets -32603.
#include <cstdint>
#include <memory>
#include <string>

#include "vmm/api/rpc_error.hpp"

namespace nvhv::api {

// The connection a request came in on, for methods that act on the caller itself
// (vm.subscribe). Null when the dispatcher is used without a server (fuzzer, unit tests).
class Peer {
 public:
  virtual ~Peer() = default;
  virtual std::uint64_t id() const = 0;
  // Whether Server::notify sends to this peer. Callable from any thread.
  virtual void set_subscribed(bool on) = 0;
  virtual bool subscribed() const = 0;
};

namespace detail {
struct ReplyState;
}

class Reply {
 public:
  Reply() = default;  // completes into nothing
  explicit Reply(std::shared_ptr<detail::ReplyState> state) : state_(std::move(state)) {}

  void result(nlohmann::json value) const;
  void error(int code, const std::string& message, nlohmann::json data = nullptr) const;
  void error(const RpcError& e) const { error(e.code(), e.what(), e.data()); }

  // True once any copy has completed.
  bool done() const;
  // A notification (no "id"): the completion is computed but never sent.
  bool is_notification() const;
  // The caller's connection; null without a server or once the connection has closed.
  std::shared_ptr<Peer> peer() const;
  // The method name, for log lines.
  const std::string& method() const;

 private:
  std::shared_ptr<detail::ReplyState> state_;
};

}  // namespace nvhv::api
