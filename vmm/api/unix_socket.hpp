#pragma once
// Unix stream socket set-up shared by the API server and its clients (plain POSIX, no Asio).
#include <sys/types.h>

#include <string>

#include "vmm/base/unique_fd.hpp"

namespace nvhv::api {

struct ListeningSocket {
  UniqueFd fd;
  // Identity of the socket file we bound, so we never unlink a successor's socket.
  dev_t dev = 0;
  ino_t ino = 0;
};

// Binds and listens on `path` with mode 0600. A stale socket file (connect is refused) is
// replaced; a live one throws SystemError(EADDRINUSE), and so does a path that exists but
// is not a socket (it is never removed). Throws ConfigError for a path too long for sun_path.
ListeningSocket listen_unix(const std::string& path);

// Removes `path` if it is still the socket file `s` was bound to.
void unlink_if_same(const std::string& path, dev_t dev, ino_t ino);

// A blocking, close-on-exec connection; throws SystemError ("connect <path>") on failure.
UniqueFd connect_unix(const std::string& path);

}  // namespace nvhv::api
