#include "vmm/api/jsonrpc.hpp"

#include <fmt/core.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "vmm/api/reply_state.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::api {
namespace {

using nlohmann::json;
// Receives one element's encoded response, or nullopt when it has none (a notification).
using Completion = std::function<void(std::optional<std::string>)>;

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

// Encodes a response, swapping one that breaks the size limit for an error the client can act on.
std::string encode_response(const json& response) {
  std::string text = encode(response);
  if (text.size() <= kMaxMessageBytes) return text;
  const json* id = response.contains("id") ? &response["id"] : nullptr;
  return encode(make_error(id ? *id : json(nullptr), code::too_large,
                           fmt::format("the response ({} bytes) exceeds the {} byte limit", text.size(), kMaxMessageBytes)));
}

bool valid_id(const json& id) { return id.is_string() || id.is_number() || id.is_null(); }

// Why `req` is not a valid Request object, or nullopt when it is.
std::optional<std::string> request_problem(const json& req) {
  if (!req.is_object()) return "a request must be an object";
  auto v = req.find("jsonrpc");
  if (v == req.end() || *v != "2.0") return "\"jsonrpc\" must be \"2.0\"";
  auto id = req.find("id");
  if (id != req.end() && !valid_id(*id)) return "\"id\" must be a string, a number or null";
  auto m = req.find("method");
  if (m == req.end() || !m->is_string()) return "\"method\" must be a string";
  auto p = req.find("params");
  if (p != req.end() && !p->is_object() && !p->is_array()) return "\"params\" must be an object or an array";
  return std::nullopt;
}

void call_handler(const Dispatcher::Handler& handler, const Params& params, const Reply& reply) {
  try {
    handler(params, reply);
  } catch (const RpcError& e) {
    reply.error(e);
  } catch (const ConfigError& e) {
    reply.error(code::invalid_params, e.what());
  } catch (const SystemError& e) {
    reply.error(code::operation_failed, e.what());
  } catch (const std::exception& e) {
    log::warn("api: {} threw: {}", reply.method(), e.what());
    reply.error(code::internal_error, fmt::format("internal error: {}", e.what()));
  } catch (...) {
    reply.error(code::internal_error, "internal error: unknown exception");
  }
}

// Collects a batch's responses; the last element to complete sends the array.
class Batch {
 public:
  Batch(std::size_t n, Dispatcher::Sink sink) : slots_(n), remaining_(n), sink_(std::move(sink)) {}

  void complete(std::size_t i, std::optional<std::string> response) {
    {
      std::lock_guard lock(mu_);
      slots_[i] = std::move(response);
      if (--remaining_ != 0) return;
    }
    send();
  }

 private:
  void send() {
    std::string out = "[";
    std::size_t parts = 0;
    for (auto& s : slots_) {
      if (!s) continue;
      if (parts++) out += ',';
      out += *s;
    }
    out += ']';
    if (parts == 0) return;  // all notifications: nothing to send
    if (out.size() > kMaxMessageBytes)
      out = encode(make_error(nullptr, code::too_large,
                              fmt::format("the batch response ({} bytes) exceeds the {} byte limit", out.size(),
                                          kMaxMessageBytes)));
    sink_(std::move(out));
  }

  std::mutex mu_;
  std::vector<std::optional<std::string>> slots_;
  std::size_t remaining_;
  Dispatcher::Sink sink_;
};

}  // namespace

LineFramer::Status LineFramer::feed(std::string_view bytes, const std::function<void(std::string_view)>& on_line) {
  if (failed_) return Status::too_large;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t nl = bytes.find('\n', pos);
    std::string_view piece = bytes.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (partial_.size() + piece.size() > max_line_) {
      failed_ = true;
      partial_.clear();
      return Status::too_large;
    }
    if (nl == std::string_view::npos) {
      partial_.append(piece);
      break;
    }
    std::string_view line = piece;
    if (!partial_.empty()) {
      partial_.append(piece);
      line = partial_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!is_blank(line)) on_line(line);
    partial_.clear();
    pos = nl + 1;
  }
  return Status::ok;
}

std::string encode(const json& message) { return message.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string make_notification(const std::string& method, const json& params) {
  json n = {{"jsonrpc", "2.0"}, {"method", method}};
  if (!params.is_null()) n["params"] = params;
  return encode(n);
}

json make_error(const json& id, int code, const std::string& message, const json& data) {
  json err = {{"code", code}, {"message", message.empty() ? default_message(code) : message}};
  if (!data.is_null()) err["data"] = data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

std::string too_large_error(std::size_t limit) {
  return encode(make_error(nullptr, code::too_large,
                           fmt::format("message exceeds the {} byte limit; closing the connection", limit)));
}

int nesting_depth(std::string_view text, int stop_at) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) >= stop_at) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

void Dispatcher::add_method(const std::string& name, Handler handler) {
  std::unique_lock lock(mu_);
  if (methods_.count(name)) throw std::logic_error("JSON-RPC method registered twice: " + name);
  methods_[name] = std::make_shared<const Handler>(std::move(handler));
}

void Dispatcher::set_method(const std::string& name, Handler handler) {
  std::unique_lock lock(mu_);
  methods_[name] = std::make_shared<const Handler>(std::move(handler));
}

bool Dispatcher::remove_method(const std::string& name) {
  std::unique_lock lock(mu_);
  return methods_.erase(name) != 0;
}

bool Dispatcher::has_method(const std::string& name) const { return find(name) != nullptr; }

std::vector<std::string> Dispatcher::method_names() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, _] : methods_) names.push_back(name);
  return names;
}

std::shared_ptr<const Dispatcher::Handler> Dispatcher::find(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : it->second;
}

bool Dispatcher::handle(std::string_view message, Sink sink, const std::shared_ptr<Peer>& peer) const {
  auto fail = [&](int c, const std::string& text) {
    sink(encode(make_error(nullptr, c, text)));
    return true;
  };
  if (message.size() > kMaxMessageBytes) {
    sink(too_large_error());
    return true;
  }
  if (nesting_depth(message) > kMaxNestingDepth)
    return fail(code::invalid_request, fmt::format("JSON nested deeper than {} levels", kMaxNestingDepth));
  json doc = json::parse(message, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(code::parse_error, "Parse error: not valid JSON");

  // Each element runs through `one`, which returns whether it will produce a response.
  auto one = [this, &peer](json req, Completion done) -> bool {
    if (auto problem = request_problem(req)) {
      json id = req.is_object() && req.contains("id") && valid_id(req["id"]) ? req["id"] : json(nullptr);
      done(encode(make_error(id, code::invalid_request, "Invalid Request: " + *problem)));
      return true;
    }
    const bool notification = !req.contains("id");
    std::string method = req["method"].get<std::string>();
    auto handler = find(method);
    if (!handler) {
      if (notification) {
        done(std::nullopt);
        return false;
      }
      done(encode(make_error(req["id"], code::method_not_found, "Method not found: " + method)));
      return true;
    }
    auto state = std::make_shared<detail::ReplyState>();
    state->method = std::move(method);
    state->peer = peer;
    state->notification = notification;
    if (notification) {
      done(std::nullopt);
    } else {
      state->id = req["id"];
      state->deliver = [done = std::move(done)](json response) { done(encode_response(response)); };
    }
    auto p = req.find("params");
    Params params(p == req.end() ? json(nullptr) : std::move(*p));
    Reply reply(std::move(state));
    call_handler(*handler, params, reply);
    return !notification;
  };

  if (doc.is_array()) {
    if (doc.empty()) return fail(code::invalid_request, "Invalid Request: empty batch");
    auto batch = std::make_shared<Batch>(doc.size(), std::move(sink));
    bool responds = false;
    for (std::size_t i = 0; i < doc.size(); ++i)
      responds |= one(std::move(doc[i]), [batch, i](std::optional<std::string> r) { batch->complete(i, std::move(r)); });
    return responds;
  }
  return one(std::move(doc), [sink = std::move(sink)](std::optional<std::string> r) {
    if (r) sink(std::move(*r));
  });
}

}  // namespace nvhv::api
