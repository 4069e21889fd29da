#include "vmm/api/api_server.hpp"

#include <boost/asio/post.hpp>

#include <chrono>

#include "vmm/api/server_impl.hpp"
#include "vmm/api/unix_socket.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::api {

void add_builtin_methods(Dispatcher& d) {
  d.set_method("vmm.ping", [](const Params& p, Reply r) {
    p.expect_none();
    r.result("pong");
  });
  d.set_method("vmm.version", [](const Params& p, Reply r) {
    p.expect_none();
    r.result({{"name", "nvhv"}, {"version", NVHV_VERSION}, {"api_version", kApiVersion}});
  });
  for (bool on : {true, false}) {
    d.set_method(on ? "vm.subscribe" : "vm.unsubscribe", [on](const Params& p, Reply r) {
      p.expect_none();
      auto peer = r.peer();
      if (!peer) throw RpcError(code::operation_failed, "notifications need a connection to go to");
      peer->set_subscribed(on);
      r.result({{"subscribed", on}});
    });
  }
}

namespace detail {

ServerImpl::ServerImpl(asio::io_context& io, const std::string& socket_path, Dispatcher& d, Server::Options o)
    : strand(asio::make_strand(io)),
      dispatcher(d),
      options(o),
      path(socket_path),
      acceptor_(strand),
      retry_timer_(strand) {
  ListeningSocket ls = listen_unix(path);
  try {
    acceptor_.assign(asio::local::stream_protocol(), ls.fd.get());
  } catch (...) {
    unlink_if_same(path, ls.dev, ls.ino);
    throw;
  }
  ls.fd.release();
  dev_ = ls.dev;
  ino_ = ls.ino;
}

void ServerImpl::start_accept() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, Socket socket) {
    if (self->closed_) return;
    if (ec) {
      // Typically EMFILE: back off instead of spinning on an error that repeats at once.
      log::warn("api: accept on {}: {}", self->path, ec.message());
      self->retry_timer_.expires_after(std::chrono::milliseconds(100));
      self->retry_timer_.async_wait([self](boost::system::error_code) {
        if (!self->closed_) self->start_accept();
      });
      return;
    }
    const std::uint64_t id = self->next_id_++;
    auto c = std::make_shared<Connection>(self, std::move(socket), id);
    self->connections_[id] = c;
    self->count.fetch_add(1, std::memory_order_relaxed);
    log::debug("api: client {} connected", id);
    c->start();
    self->start_accept();
  });
}

void ServerImpl::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  unlink_if_same(path, dev_, ino_);
  auto connections = std::move(connections_);
  connections_.clear();
  for (auto& [id, c] : connections) c->close("server closing");
  count.store(0, std::memory_order_relaxed);
}

void ServerImpl::broadcast(const std::string& message) {
  if (closed_) return;
  // send() may drop a client, which edits connections_: collect first.
  std::vector<std::shared_ptr<Connection>> targets;
  for (auto& [id, c] : connections_)
    if (c->subscribed()) targets.push_back(c);
  for (auto& c : targets) c->send(message);
}

void ServerImpl::forget(std::uint64_t id) {
  if (connections_.erase(id)) count.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace detail

Server::Server(boost::asio::io_context& io, const std::string& socket_path, Dispatcher& dispatcher)
    : Server(io, socket_path, dispatcher, Options{}) {}

Server::Server(boost::asio::io_context& io, const std::string& socket_path, Dispatcher& dispatcher, Options options)
    : impl_(std::make_shared<detail::ServerImpl>(io, socket_path, dispatcher, options)) {
  add_builtin_methods(dispatcher);
  impl_->start_accept();
  log::info("api: listening on {}", socket_path);
}

Server::~Server() { close(); }

void Server::close() { impl_->close(); }

void Server::notify(const std::string& method, const nlohmann::json& params) {
  std::string message = make_notification(method, params);
  if (message.size() > impl_->options.max_message_bytes) {
    log::warn("api: notification {} ({} bytes) is over the message limit; not sent", method, message.size());
    return;
  }
  boost::asio::post(impl_->strand, [impl = impl_, m = std::move(message)] { impl->broadcast(m); });
}

const std::string& Server::socket_path() const { return impl_->path; }
std::size_t Server::connection_count() const { return impl_->count.load(std::memory_order_relaxed); }

}  // namespace nvhv::api
