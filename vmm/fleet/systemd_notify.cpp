#include "vmm/fleet/systemd_notify.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "vmm/base/log.hpp"

namespace nvhv::fleet {

SystemdNotifier SystemdNotifier::from_environment() {
  SystemdNotifier n;
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (!env || !*env) return n;
  const std::string path = env;
  ::unsetenv("NOTIFY_SOCKET");
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof n.address_.sun_path) {
    log::warn("NOTIFY_SOCKET={}: not a Unix socket path nvhv can use; systemd will not be notified", path);
    return n;
  }
  n.address_.sun_family = AF_UNIX;
  std::memcpy(n.address_.sun_path, path.data(), path.size());
  // "@name" is Linux's abstract namespace: a leading NUL, and the length counts only the name.
  if (path[0] == '@') n.address_.sun_path[0] = '\0';
  n.address_length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '/' ? 1 : 0));
  n.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!n.fd_) log::warn("NOTIFY_SOCKET: cannot create a datagram socket ({}); systemd will not be notified", std::strerror(errno));
  return n;
}

bool SystemdNotifier::notify(std::string_view state) const noexcept {
  if (!fd_) return false;
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&address_), address_length_);
    if (n >= 0) return true;
    if (errno != EINTR) return false;
  }
}

}  // namespace nvhv::fleet
