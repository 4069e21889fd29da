#pragma once
// The management API: JSON-RPC 2.0 on a Unix stream socket, served entirely on an io_context
// the caller owns and runs (nvhv's single event-loop thread). Handlers come from a Dispatcher
// the caller fills; the server adds the built-in methods below.
//
// Threading: construct, close() and destroy the Server on the event-loop thread, or while no
// thread runs the io_context; notify() and Reply completion work from any thread. Destroy the
// Server before the io_context, and complete or drop outstanding Replies before either dies.
#include <cstddef>
#include <memory>
#include <string>

#include "vmm/api/jsonrpc.hpp"

namespace boost::asio {
class io_context;
}

namespace nvhv::api {

inline constexpr int kApiVersion = 1;

// vmm.ping -> "pong"; vmm.version -> {"name","version","api_version"};
// vm.subscribe / vm.unsubscribe -> {"subscribed": bool} for the calling connection.
// Added (replacing same-named methods) by Server's constructor.
void add_builtin_methods(Dispatcher& dispatcher);

namespace detail {
class ServerImpl;
}

class Server {
 public:
  struct Options {
    std::size_t max_message_bytes = kMaxMessageBytes;
    // Output queued for one client that is not reading; past this the client is dropped.
    std::size_t max_queued_output = std::size_t{16} << 20;
  };

  // Listens at once; throws SystemError when the socket cannot be set up, including when
  // another server answers on `socket_path` (see listen_unix).
  Server(boost::asio::io_context& io, const std::string& socket_path, Dispatcher& dispatcher);
  Server(boost::asio::io_context& io, const std::string& socket_path, Dispatcher& dispatcher, Options options);
  ~Server();  // close(), then removes the socket file if it is still ours
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stops accepting and closes every connection; replies still outstanding go nowhere.
  void close();
  // Sends {"jsonrpc":"2.0","method":method,"params":params} to every subscribed connection.
  // Thread-safe and never blocks: the sending happens on the event loop.
  void notify(const std::string& method, const nlohmann::json& params = nullptr);

  const std::string& socket_path() const;
  std::size_t connection_count() const;

 private:
  std::shared_ptr<detail::ServerImpl> impl_;
};

}  // namespace nvhv::api
