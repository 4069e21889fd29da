#include "tests/bench/qmp_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

namespace nvhv::bench {

QmpClient::QmpClient(const std::string& socket_path, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) throw std::runtime_error("QMP socket path too long: " + socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  for (;;) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    ::close(fd_);
    fd_ = -1;
    // QEMU creates the socket early during start-up; poll finely so the wait adds little.
    if (Clock::now() >= deadline) throw std::runtime_error("cannot connect to QMP socket " + socket_path);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  auto greeting = read_message(deadline);
  if (!greeting || !greeting->first.contains("QMP")) throw std::runtime_error("no QMP greeting on " + socket_path);
  execute("qmp_capabilities");
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::pair<nlohmann::json, Clock::time_point>> QmpClient::read_message(Clock::time_point deadline) {
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      return std::make_pair(nlohmann::json::parse(line), Clock::now());
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // the deadline check above ends the loop
    char buf[4096];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;  // QEMU closed the socket
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

nlohmann::json QmpClient::execute(const std::string& command, const nlohmann::json& arguments, std::chrono::milliseconds timeout) {
  nlohmann::json msg = {{"execute", command}};
  if (!arguments.is_null()) msg["arguments"] = arguments;
  const std::string text = msg.dump() + "\n";
  if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw std::runtime_error("QMP write failed for " + command);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto m = read_message(deadline);
    if (!m) throw std::runtime_error("no QMP reply to " + command);
    if (m->first.contains("event")) {
      events_.push_back({m->first, m->second});
      continue;
    }
    if (m->first.contains("error"))
      throw std::runtime_error("QMP " + command + ": " + m->first["error"].value("desc", m->first["error"].dump()));
    if (m->first.contains("return")) return m->first["return"];
  }
}

std::optional<QmpClient::Event> QmpClient::wait_event(const std::string& name, const std::vector<std::string>& statuses,
                                                      std::chrono::milliseconds timeout) {
  auto matches = [&](const nlohmann::json& m) {
    if (m.value("event", "") != name) return false;
    if (statuses.empty()) return true;
    const std::string status = m.contains("data") ? m["data"].value("status", "") : "";
    for (auto& s : statuses)
      if (s == status) return true;
    return false;
  };
  while (!events_.empty()) {
    Event e = events_.front();
    events_.pop_front();
    if (matches(e.data)) return e;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto m = read_message(deadline);
    if (!m) return std::nullopt;
    if (matches(m->first)) return Event{m->first, m->second};
  }
}

}  // namespace nvhv::bench
