#pragma once
// JSON-RPC 2.0 over newline-delimited JSON, with no I/O of its own: the Unix-socket server and
// (later) the in-guest agent on a serial port feed it lines and send back what it produces.
//
// Framing: one JSON text per line in each direction, at most kMaxMessageBytes per line.
// Batches, notifications and error objects follow the JSON-RPC 2.0 specification; the
// behaviour at each edge is written down in docs/api.md.
#include <cstddef>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vmm/api/params.hpp"
#include "vmm/api/reply.hpp"
#include "vmm/api/rpc_error.hpp"

namespace nvhv::api {

inline constexpr std::size_t kMaxMessageBytes = std::size_t{1} << 20;
// Deeper JSON is refused before parsing, so nothing downstream (dump, handlers) recurses deeply.
inline constexpr int kMaxNestingDepth = 64;

// Splits a byte stream into lines. A line longer than the limit fails the stream for good:
// there is no reliable point to resynchronise at, so the owner should answer with
// too_large_error() and close.
class LineFramer {
 public:
  enum class Status { ok, too_large };
  explicit LineFramer(std::size_t max_line = kMaxMessageBytes) : max_line_(max_line) {}

  // Calls on_line for each complete non-blank line, without its "\n". A "\r" before the
  // "\n" is dropped too, so CRLF clients (a serial console) work.
  Status feed(std::string_view bytes, const std::function<void(std::string_view)>& on_line);
  std::size_t buffered() const { return partial_.size(); }

 private:
  std::size_t max_line_;
  std::string partial_;
  bool failed_ = false;
};

class Dispatcher {
 public:
  using Handler = std::function<void(const Params& params, Reply reply)>;
  // Receives one complete outgoing message, without the "\n".
  using Sink = std::function<void(std::string message)>;

  // Throws std::logic_error when `name` is taken.
  void add_method(const std::string& name, Handler handler);
  // Adds or replaces.
  void set_method(const std::string& name, Handler handler);
  bool remove_method(const std::string& name);
  bool has_method(const std::string& name) const;
  std::vector<std::string> method_names() const;

  // Handles one message (a line without its "\n"). `sink` is called at most once, with the
  // response or batch response, either before handle() returns or later from whichever
  // thread completes the last Reply; never for a notification or an all-notification batch.
  // Returns whether `sink` will be (or already was) called. Handlers run on the calling thread
  // and must not block: long work replies later. `peer` is what Reply::peer() hands handlers.
  bool handle(std::string_view message, Sink sink, const std::shared_ptr<Peer>& peer = nullptr) const;

 private:
  std::shared_ptr<const Handler> find(const std::string& name) const;

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Handler>> methods_;
};

// Serialises one message; invalid UTF-8 in strings is replaced rather than thrown on.
std::string encode(const nlohmann::json& message);
std::string make_notification(const std::string& method, const nlohmann::json& params = nullptr);
nlohmann::json make_error(const nlohmann::json& id, int code, const std::string& message,
                          const nlohmann::json& data = nullptr);
// The response to a line over the limit (id null, code::too_large).
std::string too_large_error(std::size_t limit = kMaxMessageBytes);
// Deepest array/object nesting in `text` (strings are skipped); stops counting past `stop_at`.
int nesting_depth(std::string_view text, int stop_at = kMaxNestingDepth + 1);

}  // namespace nvhv::api
