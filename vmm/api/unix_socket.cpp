#include "vmm/api/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::api {
namespace {

sockaddr_un make_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    throw ConfigError("API socket path must be 1 to " + std::to_string(sizeof(addr.sun_path) - 1) +
                      " bytes long: '" + path + "'");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// True when a server accepts connections on `path`; false when the file is a leftover.
bool someone_listening(const sockaddr_un& addr, const std::string& path) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) throw_errno("socket");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return true;
  // EAGAIN: the listener's backlog is full, so it is very much alive.
  if (errno == EAGAIN) return true;
  if (errno == ECONNREFUSED || errno == ENOENT) return false;
  throw_errno("connect " + path);
}

}  // namespace

ListeningSocket listen_unix(const std::string& path) {
  const sockaddr_un addr = make_address(path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw SystemError(EADDRINUSE, path + " exists and is not a socket; not replacing it");
    if (someone_listening(addr, path)) throw SystemError(EADDRINUSE, "another server is listening on " + path);
    log::info("api: replacing stale socket {}", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("unlink stale socket " + path);
  }

  ListeningSocket ls;
  ls.fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!ls.fd) throw_errno("socket");
  if (::bind(ls.fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind " + path);
  // bind() applies the process umask, which is not ours to change (other threads create files).
  // Tightening the mode before listen() is enough: until then every connect is refused.
  if (::chmod(path.c_str(), 0600) != 0 || ::stat(path.c_str(), &st) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    throw SystemError(err, "chmod 0600 " + path);
  }
  ls.dev = st.st_dev;
  ls.ino = st.st_ino;
  if (::listen(ls.fd.get(), SOMAXCONN) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    throw SystemError(err, "listen " + path);
  }
  return ls;
}

void unlink_if_same(const std::string& path, dev_t dev, ino_t ino) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(path.c_str());
}

UniqueFd connect_unix(const std::string& path) {
  const sockaddr_un addr = make_address(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_errno("connect " + path);
  return fd;
}

}  // namespace nvhv::api
