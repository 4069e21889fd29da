#pragma once
// A minimal QMP client (QEMU Machine Protocol: one JSON object per line over a Unix socket), just
// what the checkpoint benchmark needs: run a command, wait for an event, with timestamps.
#include <chrono>
#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/bench/bench_process.hpp"

namespace nvhv::bench {

class QmpClient {
 public:
  // Connects (retrying while QEMU has not created the socket yet), reads the greeting and
  // leaves capability negotiation mode.
  QmpClient(const std::string& socket_path, std::chrono::milliseconds timeout);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs a command and returns its "return" value; throws with QEMU's message on "error".
  nlohmann::json execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

  struct Event {
    nlohmann::json data;
    Clock::time_point at;  // when the line was read
  };
  // The first event named `name` whose data["status"] is one of `statuses` (any when empty),
  // including events that arrived while waiting for command replies.
  std::optional<Event> wait_event(const std::string& name, const std::vector<std::string>& statuses,
                                  std::chrono::milliseconds timeout);

 private:
  std::optional<std::pair<nlohmann::json, Clock::time_point>> read_message(Clock::time_point deadline);

  int fd_ = -1;
  std::string buffer_;
  std::deque<Event> events_;  // (name in data["event"])
};

}  // namespace nvhv::bench
