#pragma once
// The agent's end of the line-delimited JSON-RPC channel: the virtio-console port (a tty in
// the guest, /dev/hvc0), any other path, or stdin/stdout. Replies may come from worker threads,
// so every write takes a lock and writes one whole line.
#include <memory>
#include <mutex>
#include <string>

#include "vmm/api/jsonrpc.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::agent {

class Port {
 public:
  // Opens `path` read-write; a tty is put in raw mode (no echo, no line editing, no CR/LF
  // translation), which a console port would otherwise apply to the JSON both ways.
  static Port open_path(const std::string& path);
  static Port stdio();

  Port(Port&&) = default;
  // Sends one message (a line without "\n"). Errors are logged, not thrown: a host that went
  // away must not take the agent, and the processes it checkpoints, down with it.
  void send(const std::string& message);
  // Reads and dispatches until end of input (stdio) or a read error. A port that reports end
  // of input (no host connected) is polled again instead.
  void serve(const api::Dispatcher& d);

 private:
  Port(int in, int out, bool owned, bool retry_eof);
  UniqueFd owned_;
  int in_, out_;
  bool retry_eof_;
  std::unique_ptr<std::mutex> write_mu_ = std::make_unique<std::mutex>();
};

}  // namespace nvhv::agent
