#include "vmm/api/reply.hpp"

#include "vmm/api/jsonrpc.hpp"
#include "vmm/api/reply_state.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::api {
namespace detail {

ReplyState::~ReplyState() {
  if (done.load(std::memory_order_acquire)) return;
  if (!notification) log::warn("api: {} was dropped without a reply; answering -32603", method);
  try {
    complete(make_error(id, code::internal_error, "internal error: the request was dropped without a reply"));
  } catch (const std::exception& e) {
    log::error("api: cannot send the reply to {}: {}", method, e.what());
  }
}

void ReplyState::complete(nlohmann::json response) {
  if (done.exchange(true, std::memory_order_acq_rel)) {
    log::warn("api: {} replied more than once; the extra reply is ignored", method);
    return;
  }
  if (deliver) deliver(std::move(response));
}

}  // namespace detail

namespace {
const std::string kNoMethod;
}  // namespace

void Reply::result(nlohmann::json value) const {
  if (!state_) return;
  state_->complete({{"jsonrpc", "2.0"}, {"id", state_->id}, {"result", std::move(value)}});
}

void Reply::error(int code, const std::string& message, nlohmann::json data) const {
  if (!state_) return;
  state_->complete(make_error(state_->id, code, message, data));
}

bool Reply::done() const { return state_ && state_->done.load(std::memory_order_acquire); }
bool Reply::is_notification() const { return !state_ || state_->notification; }
std::shared_ptr<Peer> Reply::peer() const { return state_ ? state_->peer.lock() : nullptr; }
const std::string& Reply::method() const { return state_ ? state_->method : kNoMethod; }

}  // namespace nvhv::api
