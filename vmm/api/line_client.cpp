#include "vmm/api/line_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include "vmm/api/unix_socket.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::api {

LineClient LineClient::connect(const std::string& path, std::size_t max_line) {
  return LineClient(connect_unix(path), max_line);
}

bool LineClient::send_line(std::string_view line) {
  std::string framed(line);
  framed.push_back('\n');
  return send_raw(framed);
}

bool LineClient::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    // MSG_NOSIGNAL: a server that hung up must give EPIPE, not kill the client.
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return false;
      throw_errno("send");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

LineClient::ReadStatus LineClient::read_line(std::string& line, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      line.assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      return ReadStatus::line;
    }
    if (buffer_.size() > max_line_) return ReadStatus::too_large;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ReadStatus::timeout;
    pollfd pfd{fd_.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (rc == 0) return ReadStatus::timeout;
    char chunk[65536];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return ReadStatus::closed;
      throw_errno("recv");
    }
    if (n == 0) return ReadStatus::closed;
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

nlohmann::json LineClient::call(const std::string& method, const nlohmann::json& params,
                                std::chrono::milliseconds timeout, int id) {
  nlohmann::json req = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) req["params"] = params;
  if (!send_line(encode(req))) throw std::runtime_error("the server closed the connection");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    std::string line;
    switch (read_line(line, std::max(left, std::chrono::milliseconds(0)))) {
      case ReadStatus::line: break;
      case ReadStatus::timeout: throw std::runtime_error("no reply to " + method + " in time");
      case ReadStatus::closed: throw std::runtime_error("the server closed the connection");
      case ReadStatus::too_large: throw std::runtime_error("the server sent a line over the size limit");
    }
    auto msg = nlohmann::json::parse(line, nullptr, false);
    if (msg.is_discarded() || !msg.is_object()) throw std::runtime_error("malformed reply: " + line);
    if (msg.contains("id") && msg["id"] == id) return msg;
  }
}

void LineClient::shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }

}  // namespace nvhv::api
