#include "vmm/agent_channel.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <cerrno>
#include <random>
#include <vector>

#include "vmm/api/rpc_error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv {

using nlohmann::json;

namespace {

// Appends to console.log without blocking the vCPU: what cannot be written now is dropped.
void write_log(int fd, std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

std::string preview(std::string_view line) {
  constexpr size_t kMax = 80;
  return line.size() <= kMax ? std::string(line) : std::string(line.substr(0, kMax)) + "...";
}

// The guest's error object, checked: a hostile guest must not make the host send a malformed one.
api::RpcError guest_error(const std::string& method, const json& e) {
  if (e.is_object()) {
    auto code = e.find("code");
    auto message = e.find("message");
    if (code != e.end() && code->is_number_integer() && message != e.end() && message->is_string()) {
      auto data = e.find("data");
      return api::RpcError(code->get<int>(), message->get<std::string>(), data == e.end() ? json(nullptr) : *data);
    }
  }
  return api::RpcError(api::code::operation_failed, method + ": the guest agent sent a malformed error object", json{{"error", e}});
}

}  // namespace

AgentChannel::AgentChannel(boost::asio::io_context& io, Inject inject, Options options)
    : io_(io), inject_(std::move(inject)), options_(options), framer_(options.max_line), retry_timer_(io) {
  // Ids carry a per-run nonce: a reply to a request of an earlier run (its bytes can outlive
  // that run in the console's checkpointed input buffer) must never match a request of this one.
  std::random_device rd;
  id_prefix_ = fmt::format("nvhv-{:08x}-", rd());
}

AgentChannel::~AgentChannel() { close("the VM is stopping"); }

void AgentChannel::on_guest_output(std::span<const uint8_t> bytes) {
  if (options_.log_fd >= 0) write_log(options_.log_fd, bytes);
  bool post = false;
  {
    std::lock_guard lock(in_mu_);
    if (inbox_.size() + bytes.size() > options_.max_queued_input) {
      dropped_input_bytes_ += bytes.size();
      return;
    }
    inbox_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    post = !std::exchange(drain_posted_, true);
  }
  if (post) boost::asio::post(io_, [this] { drain_input(); });
}

void AgentChannel::drain_input() {
  std::string bytes;
  uint64_t dropped = 0;
  {
    std::lock_guard lock(in_mu_);
    bytes.swap(inbox_);
    drain_posted_ = false;
    dropped = std::exchange(dropped_input_bytes_, 0);
  }
  if (dropped) log::debug("agent: dropped {} bytes of guest output: the event loop fell behind", dropped);
  std::vector<std::string> lines;
  {
    std::lock_guard lock(mu_);
    // One segment per newline, so an oversized line is known to end at its own newline and the
    // framer (which gives up for good on one) can be replaced there.
    size_t pos = 0;
    while (pos < bytes.size()) {
      size_t nl = bytes.find('\n', pos);
      size_t end = nl == std::string::npos ? bytes.size() : nl + 1;
      std::string_view segment(bytes.data() + pos, end - pos);
      pos = end;
      const bool ends_line = segment.back() == '\n';
      if (skipping_long_line_) {
        skipping_long_line_ = !ends_line;
        continue;
      }
      auto st = framer_.feed(segment, [&](std::string_view line) { lines.emplace_back(line); });
      if (st == api::LineFramer::Status::too_large) {
        ++status_.dropped_lines;
        log::debug("agent: dropped a guest line over {} bytes", options_.max_line);
        framer_ = api::LineFramer(options_.max_line);
        skipping_long_line_ = !ends_line;
      }
    }
    // Guest activity is a cheap moment to retry: its receive buffers may have room again.
    flush_output_locked();
  }
  for (const auto& l : lines) on_line(l);
}

void AgentChannel::on_line(std::string_view line) {
  auto drop = [&](const char* why) {
    {
      std::lock_guard lock(mu_);
      ++status_.dropped_lines;
    }
    log::debug("agent: ignored guest line ({}): {}", why, preview(line));
  };
  if (api::nesting_depth(line) > api::kMaxNestingDepth) return drop("nested too deeply");
  json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded()) return drop("not JSON");
  if (!msg.is_object()) return drop("not a JSON object");
  if (auto v = msg.find("jsonrpc"); v == msg.end() || *v != "2.0") return drop("not JSON-RPC 2.0");
  auto method = msg.find("method");
  if (method != msg.end()) {
    if (!method->is_string()) return drop("method is not a string");
    if (msg.contains("id")) return drop("a request from the guest; the host serves none");
    const auto name = method->get<std::string>();
    if (name.rfind("agent.", 0) != 0) return drop("a notification outside agent.*");
    return on_notification(name, msg);
  }
  if (!msg.contains("id") || !(msg.contains("result") || msg.contains("error"))) return drop("neither a response nor a notification");
  on_response(msg);
}

void AgentChannel::on_notification(const std::string& method, const json& msg) {
  json params = msg.contains("params") ? msg["params"] : json(nullptr);
  Notify notify;
  {
    std::lock_guard lock(mu_);
    if (method == "agent.ready") {
      status_.ready_params = params;
      status_.ready_at = std::chrono::system_clock::now();
    }
    notify = notify_;
  }
  // Only agent.ready at info: a chatty guest must not flood nvhv's log.
  if (method == "agent.ready")
    log::info("agent: {} {}", method, preview(api::encode(params)));
  else
    log::debug("agent: {} {}", method, preview(api::encode(params)));
  if (notify) notify(method, params);
}

void AgentChannel::on_response(const json& msg) {
  const json& id = msg["id"];
  if (!id.is_string()) {
    log::debug("agent: ignored a response with id {} (not one of ours)", preview(api::encode(id)));
    std::lock_guard lock(mu_);
    ++status_.dropped_lines;
    return;
  }
  std::optional<Pending> p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id.get<std::string>());
    if (it == pending_.end()) {
      ++status_.dropped_lines;
    } else {
      p = std::move(it->second);
      pending_.erase(it);
    }
  }
  if (!p) {
    log::debug("agent: ignored a response to unknown id {} (timed out, or never sent)", preview(id.get<std::string>()));
    return;
  }
  p->timer->cancel();
  if (auto e = msg.find("error"); e != msg.end() && !e->is_null())
    p->reply.error(guest_error(p->method, *e));
  else
    p->reply.result(msg.contains("result") ? msg["result"] : json(nullptr));
}

void AgentChannel::call(const std::string& method, json params, api::Reply reply, std::optional<std::chrono::milliseconds> timeout) {
  const auto wait = timeout.value_or(options_.default_timeout);
  std::lock_guard lock(mu_);
  if (closed_) return reply.error(api::code::shutting_down, fmt::format("{}: {}", method, closed_why_));
  if (pending_.size() >= options_.max_outstanding)
    return reply.error(api::code::busy, fmt::format("{}: {} agent requests are already waiting for the guest", method, pending_.size()));
  const std::string id = next_id_locked();
  json request{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) request["params"] = std::move(params);
  std::string line = api::encode(request);
  if (line.size() > api::kMaxMessageBytes)
    return reply.error(api::code::too_large, fmt::format("{}: the request ({} bytes) exceeds the {} byte line limit", method, line.size(), api::kMaxMessageBytes));
  if (outbox_.size() + line.size() + 1 > options_.max_queued_output)
    return reply.error(api::code::busy, fmt::format("{}: the guest is not reading its console ({} bytes already queued for it)", method, outbox_.size()));
  line += '\n';
  outbox_ += line;

  auto timer = std::make_unique<boost::asio::steady_timer>(io_, wait);
  timer->async_wait([this, id](const boost::system::error_code& ec) {
    if (!ec) on_timeout(id);
  });
  pending_.emplace(id, Pending{method, std::move(reply), std::move(timer), wait});
  flush_output_locked();
}

void AgentChannel::on_timeout(const std::string& id) {
  std::optional<Pending> p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // answered meanwhile
    p = std::move(it->second);
    pending_.erase(it);
  }
  const auto ms = p->timeout.count();
  log::warn("agent: {} ({}) timed out after {} ms", p->method, id, ms);
  p->reply.error(api::code::operation_failed,
                 fmt::format("{}: no answer from the guest agent within {} ms (is nvhv-agent running on the console port?)", p->method, ms),
                 json{{"method", p->method}, {"timeout_ms", ms}});
}

void AgentChannel::flush_output_locked() {
  if (outbox_.empty()) return;
  size_t n = 0;
  try {
    n = inject_(std::span(reinterpret_cast<const uint8_t*>(outbox_.data()), outbox_.size()));
  } catch (const std::exception& e) {
    log::debug("agent: console input failed: {}", e.what());
  }
  outbox_.erase(0, std::min(n, outbox_.size()));
  if (!outbox_.empty()) arm_retry_locked();
}

void AgentChannel::arm_retry_locked() {
  if (retry_armed_ || closed_) return;
  retry_armed_ = true;
  retry_timer_.expires_after(options_.retry_interval);
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    std::lock_guard lock(mu_);
    retry_armed_ = false;
    flush_output_locked();
  });
}

std::string AgentChannel::next_id_locked() { return id_prefix_ + std::to_string(next_id_++); }

void AgentChannel::set_notify(Notify notify) {
  std::lock_guard lock(mu_);
  notify_ = std::move(notify);
}

void AgentChannel::close(const std::string& why) {
  std::map<std::string, Pending> failing;
  {
    std::lock_guard lock(mu_);
    if (!closed_) {
      closed_ = true;
      closed_why_ = why;
    }
    failing.swap(pending_);
    retry_timer_.cancel();
  }
  for (auto& [id, p] : failing) {
    p.timer->cancel();
    p.reply.error(api::code::shutting_down, fmt::format("{}: {} before the guest agent answered", p.method, why));
  }
}

AgentChannel::Status AgentChannel::status() const {
  std::lock_guard lock(mu_);
  Status s = status_;
  s.outstanding = pending_.size();
  s.queued_bytes = outbox_.size();
  return s;
}

void add_agent_methods(api::Dispatcher& dispatcher, AgentChannel* agent) {
  for (const char* name : kAgentMethods) {
    dispatcher.add_method(name, [agent, method = std::string(name)](const api::Params& params, api::Reply reply) {
      if (!agent)
        throw api::RpcError(api::code::invalid_state,
                            method + ": this VM has no virtio console (\"console\" in guest.json), so there is no guest agent to reach");
      json forwarded = params.json();
      std::optional<std::chrono::milliseconds> timeout;
      if (forwarded.is_object() && forwarded.contains("timeout_ms")) {
        const auto ms = params.get<uint32_t>("timeout_ms");
        if (ms < 1 || ms > kMaxAgentTimeoutMs) throw api::invalid_params(fmt::format("timeout_ms: must be between 1 and {}", kMaxAgentTimeoutMs));
        timeout = std::chrono::milliseconds(ms);
        // The proxy's own option: the agent refuses members it does not know.
        forwarded.erase("timeout_ms");
      }
      agent->call(method, std::move(forwarded), std::move(reply), timeout);
    });
  }
}

}  // namespace nvhv
