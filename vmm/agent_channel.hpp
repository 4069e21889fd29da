#pragma once
// The host end of the guest agent's channel (docs/agent.md, "Host side"): line-delimited
// JSON-RPC 2.0 over the virtio-console port. The API proxies its agent.* methods through here:
// each becomes a request to the guest under a host-chosen id, and the guest's answer completes
// the API reply. agent.* notifications from the guest become API notifications.
//
// Edges: guest output arrives through on_guest_output() (a vCPU thread, under the console's
// device lock), host->guest bytes leave through the `inject` function (the console's
// inject_input). Everything else runs on the io_context; the channel keeps no state that must
// survive a power failure (outstanding requests fail when the VM stops).
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "vmm/api/jsonrpc.hpp"

namespace nvhv {

class AgentChannel {
 public:
  // Accepts a prefix of the bytes (maybe none), like VirtioConsole::inject_input; must not block.
  using Inject = std::function<size_t(std::span<const uint8_t>)>;
  using Notify = std::function<void(const std::string& method, const nlohmann::json& params)>;

  struct Options {
    std::chrono::milliseconds default_timeout{30'000};
    size_t max_outstanding = 64;
    // Host->guest bytes the guest has not taken yet; past this new requests are refused.
    size_t max_queued_output = size_t{2} << 20;
    // Guest output waiting for the event loop; past this it is dropped (a stalled loop must not
    // let the guest grow nvhv's memory).
    size_t max_queued_input = size_t{4} << 20;
    size_t max_line = api::kMaxMessageBytes;
    std::chrono::milliseconds retry_interval{10};
    int log_fd = -1;  // console.log: every byte the guest writes, JSON or not
  };

  struct Status {
    std::optional<nlohmann::json> ready_params;  // of the last agent.ready
    std::chrono::system_clock::time_point ready_at{};
    size_t outstanding = 0;
    size_t queued_bytes = 0;
    uint64_t dropped_lines = 0;
  };

  AgentChannel(boost::asio::io_context& io, Inject inject, Options options);
  // Construct and destroy while no thread runs the io_context, or on its thread.
  ~AgentChannel();
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;

  // vCPU thread, device lock held: copies and posts, never blocks or calls into the device.
  void on_guest_output(std::span<const uint8_t> bytes);
  // Any thread. Sends `method` with `params` (null, object or array) to the guest; `reply` gets
  // the guest's result or error, or an error naming the method on timeout, overload or close.
  void call(const std::string& method, nlohmann::json params, api::Reply reply,
            std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // Any thread; null to stop.
  void set_notify(Notify notify);
  // Fails every outstanding request with `why` and refuses new ones. Any thread.
  void close(const std::string& why);
  Status status() const;

 private:
  struct Pending {
    std::string method;
    api::Reply reply;
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::milliseconds timeout;
  };
  void drain_input();                     // event loop
  void on_line(std::string_view line);    // event loop, no lock held
  void on_response(const nlohmann::json& msg);
  void on_notification(const std::string& method, const nlohmann::json& msg);
  void flush_output_locked();
  void arm_retry_locked();
  void on_timeout(const std::string& id);
  std::string next_id_locked();

  boost::asio::io_context& io_;
  Inject inject_;
  Options options_;

  std::mutex in_mu_;  // the only lock a vCPU thread takes
  std::string inbox_;
  bool drain_posted_ = false;
  uint64_t dropped_input_bytes_ = 0;

  mutable std::mutex mu_;
  api::LineFramer framer_;
  bool skipping_long_line_ = false;  // discarding the rest of an oversized line
  std::string outbox_;
  bool retry_armed_ = false;
  boost::asio::steady_timer retry_timer_;
  std::map<std::string, Pending> pending_;
  std::string id_prefix_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  std::string closed_why_;
  Notify notify_;
  Status status_;
};

// The methods nvhv-agent serves (docs/agent.md), proxied by name through `agent` (null: a VM
// without a console, answered -32000). Named one by one, not by prefix: the dispatcher has no
// fallback, and an unknown agent.* name is better refused by nvhv at once than after a round
// trip. An optional "timeout_ms" (1..3600000) in object params is the proxy's own and is
// stripped before forwarding.
inline constexpr const char* kAgentMethods[] = {"agent.ping", "agent.wpp.start", "agent.wpp.list", "agent.wpp.checkpoint", "agent.wpp.stop"};
inline constexpr uint32_t kMaxAgentTimeoutMs = 3'600'000;
void add_agent_methods(api::Dispatcher& dispatcher, AgentChannel* agent);

}  // namespace nvhv
