#pragma once
// Readiness and status for systemd (sd_notify(3)): datagrams like "READY=1" or "STATUS=..." sent
// to the socket named by $NOTIFY_SOCKET. Written out here rather than taken from libsystemd: the
// protocol is a documented, stable single sendmsg() (systemd encourages reimplementing it), and
// nvhv then needs no extra library at build or run time. Without $NOTIFY_SOCKET it does nothing.
#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <string_view>

#include "vmm/base/unique_fd.hpp"

namespace nvhv::fleet {

class SystemdNotifier {
 public:
  // Reads and unsets $NOTIFY_SOCKET (so no child inherits it). A value that is not a Unix
  // socket path ("/..." or "@abstract") is logged and ignored.
  static SystemdNotifier from_environment();
  SystemdNotifier() = default;

  bool enabled() const { return fd_.valid(); }
  // Sends one datagram of NAME=VALUE lines; never blocks and never throws (the power-fail path
  // calls it). False when it could not be sent.
  bool notify(std::string_view state) const noexcept;

 private:
  UniqueFd fd_;
  sockaddr_un address_{};
  socklen_t address_length_ = 0;
};

}  // namespace nvhv::fleet
