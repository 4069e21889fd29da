#pragma once
// A small blocking client for the API socket: nvhvctl and the tests use it. Reads lines with a
// timeout so a silent server never hangs the caller.
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "vmm/api/jsonrpc.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::api {

class LineClient {
 public:
  enum class ReadStatus { line, timeout, closed, too_large };

  // Throws SystemError when nobody accepts on `path`.
  static LineClient connect(const std::string& path, std::size_t max_line = kMaxMessageBytes);
  explicit LineClient(UniqueFd fd, std::size_t max_line = kMaxMessageBytes) : fd_(std::move(fd)), max_line_(max_line) {}

  // Sends `line` plus "\n". False when the server has closed the connection.
  bool send_line(std::string_view line);
  // Sends bytes as they are (tests use it to split or corrupt framing).
  bool send_raw(std::string_view bytes);
  // The next line without its "\n"; closed covers EOF and a reset connection.
  ReadStatus read_line(std::string& line, std::chrono::milliseconds timeout);
  // Sends a request with this id and reads until the response carrying the same id, skipping
  // notifications. Throws std::runtime_error on timeout, close or a malformed reply.
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nullptr,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30), int id = 1);
  void shutdown_write();
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::size_t max_line_;
  std::string buffer_;
};

}  // namespace nvhv::api
