#include "guest-images/agent/port.hpp"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::agent {

Port::Port(int in, int out, bool owned, bool retry_eof)
    : owned_(owned ? in : -1), in_(in), out_(out), retry_eof_(retry_eof) {}

Port Port::open_path(const std::string& path) {
  // O_CLOEXEC: a checkpointed process must not inherit the port (CRIU would then have to dump a tty).
  int fd = ::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) throw_errno("open port " + path);
  if (::isatty(fd)) {
    termios t;
    if (::tcgetattr(fd, &t) == 0) {
      ::cfmakeraw(&t);
      ::tcsetattr(fd, TCSANOW, &t);
    }
  }
  return Port(fd, fd, true, true);
}

Port Port::stdio() {
  // Children get their own stdin/stdout from spawn_process(); only keep the agent's out of exec'd CRIU.
  ::fcntl(0, F_SETFD, FD_CLOEXEC);
  ::fcntl(1, F_SETFD, FD_CLOEXEC);
  return Port(0, 1, false, false);
}

void Port::send(const std::string& message) {
  std::string line = message + "\n";
  std::lock_guard lk(*write_mu_);
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(out_, line.data() + off, line.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::warn("agent: port write failed: {}", std::strerror(errno));
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void Port::serve(const api::Dispatcher& d) {
  api::LineFramer framer;
  char buf[65536];
  auto sink = [this](std::string m) { send(m); };
  for (;;) {
    ssize_t n = ::read(in_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EIO && retry_eof_) {  // a hangup on the console: wait for the host to come back
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      log::error("agent: port read failed: {}", std::strerror(errno));
      return;
    }
    if (n == 0) {
      if (!retry_eof_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    auto st = framer.feed(std::string_view(buf, static_cast<size_t>(n)),
                          [&](std::string_view line) { d.handle(line, sink); });
    if (st == api::LineFramer::Status::too_large) {
      // No place to resynchronise in the stream (see LineFramer): answer once, start over.
      send(api::too_large_error());
      framer = api::LineFramer();
    }
  }
}

}  // namespace nvhv::agent
