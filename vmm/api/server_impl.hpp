#pragma once
// Internal to api_server.cpp / server_connection.cpp: the Asio side of Server.
//
// Everything here runs on one strand, so the server stays correct even if the caller runs
// its io_context on several threads. Completion handlers hold shared_ptrs to the objects
// they touch, so a handler that fires after Server is gone (aborted accept, late reply)
// finds live memory and a `closed` flag instead of a dangling pointer.
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/api/api_server.hpp"

namespace nvhv::api::detail {

namespace asio = boost::asio;
using Strand = asio::strand<asio::io_context::executor_type>;
using Socket = asio::basic_stream_socket<asio::local::stream_protocol, Strand>;
using Acceptor = asio::basic_socket_acceptor<asio::local::stream_protocol, Strand>;

class Connection;

class ServerImpl : public std::enable_shared_from_this<ServerImpl> {
 public:
  ServerImpl(asio::io_context& io, const std::string& path, Dispatcher& dispatcher, Server::Options options);

  void start_accept();
  void close();
  void broadcast(const std::string& message);
  void forget(std::uint64_t id);

  Strand strand;
  Dispatcher& dispatcher;
  const Server::Options options;
  const std::string path;
  std::atomic<std::size_t> count{0};

 private:
  Acceptor acceptor_;
  asio::steady_timer retry_timer_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  // Strong: a client that half-closed while replies are pending has no I/O in flight to keep
  // it alive. Connection::close() (also called by close()) removes it.
  std::map<std::uint64_t, std::shared_ptr<Connection>> connections_;
  std::uint64_t next_id_ = 1;
  bool closed_ = false;
};

// One client. Reads lines, hands them to the dispatcher, queues the replies.
class Connection : public Peer, public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ServerImpl> server, Socket socket, std::uint64_t id);

  void start() { read(); }
  // Queues one message (without "\n"); drops the client when its queue passes the cap.
  void send(std::string_view message);
  void close(std::string_view why);

  std::uint64_t id() const override { return id_; }
  void set_subscribed(bool on) override { subscribed_.store(on, std::memory_order_relaxed); }
  bool subscribed() const override { return subscribed_.load(std::memory_order_relaxed); }

 private:
  void read();
  void on_line(std::string_view line);
  void on_response(std::string message);
  void flush();
  // Closes once nothing more will be written: after EOF with every reply sent, or after the
  // final error for an oversized message.
  void maybe_finish();

  std::shared_ptr<ServerImpl> server_;
  Socket socket_;
  const std::uint64_t id_;
  LineFramer framer_;
  std::vector<char> read_buffer_;
  std::string pending_;   // queued, not yet handed to the socket
  std::string inflight_;  // being written; must stay untouched until the write completes
  bool writing_ = false;
  bool read_done_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;
  long outstanding_ = 0;  // requests whose response has not been queued yet
  std::atomic<bool> subscribed_{false};
};

}  // namespace nvhv::api::detail
