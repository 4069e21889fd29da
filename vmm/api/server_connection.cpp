#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>

#include "vmm/api/server_impl.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::api::detail {

namespace {
constexpr std::size_t kReadChunk = 64 * 1024;
// A burst of replies may grow the write buffers; give big ones back once drained.
constexpr std::size_t kKeepCapacity = 1 << 20;
}  // namespace

Connection::Connection(std::shared_ptr<ServerImpl> server, Socket socket, std::uint64_t id)
    : server_(std::move(server)),
      socket_(std::move(socket)),
      id_(id),
      framer_(server_->options.max_message_bytes),
      read_buffer_(kReadChunk) {}

void Connection::read() {
  socket_.async_read_some(asio::buffer(read_buffer_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
    if (self->closed_) return;
    if (ec) {
      if (ec != asio::error::eof) return self->close(ec.message());
      self->read_done_ = true;
      return self->maybe_finish();
    }
    auto status = self->framer_.feed({self->read_buffer_.data(), n}, [&](std::string_view line) {
      if (!self->closed_) self->on_line(line);
    });
    if (self->closed_) return;
    if (status == LineFramer::Status::too_large) {
      log::warn("api: client {} sent a message over {} bytes; closing it", self->id_, self->server_->options.max_message_bytes);
      self->send(too_large_error(self->server_->options.max_message_bytes));
      self->read_done_ = true;
      self->close_after_flush_ = true;
      return self->maybe_finish();
    }
    self->read();
  });
}

void Connection::on_line(std::string_view line) {
  std::weak_ptr<Connection> weak = weak_from_this();
  // The sink may run on any thread, and after this connection has gone: it only holds a weak
  // reference and hops onto the strand before touching anything.
  auto sink = [weak](std::string message) {
    if (auto c = weak.lock()) {
      auto executor = c->socket_.get_executor();
      asio::dispatch(executor, [c = std::move(c), m = std::move(message)]() mutable { c->on_response(std::move(m)); });
    }
  };
  if (server_->dispatcher.handle(line, std::move(sink), shared_from_this())) ++outstanding_;
}

void Connection::on_response(std::string message) {
  --outstanding_;
  send(message);
  maybe_finish();
}

void Connection::send(std::string_view message) {
  if (closed_) return;
  const std::size_t queued = pending_.size() + inflight_.size() + message.size() + 1;
  if (queued > server_->options.max_queued_output) {
    log::warn("api: client {} is not reading its replies ({} bytes queued); dropping it", id_, queued);
    return close("output queue full");
  }
  pending_.append(message);
  pending_.push_back('\n');
  flush();
}

void Connection::flush() {
  if (writing_ || closed_ || pending_.empty()) return;
  inflight_.swap(pending_);
  writing_ = true;
  asio::async_write(socket_, asio::buffer(inflight_), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    self->writing_ = false;
    if (self->inflight_.capacity() > kKeepCapacity)
      std::string().swap(self->inflight_);
    else
      self->inflight_.clear();
    if (self->closed_) return;
    if (ec) return self->close(ec.message());
    self->flush();
    self->maybe_finish();
  });
}

void Connection::maybe_finish() {
  if (closed_ || writing_ || !pending_.empty()) return;
  if (close_after_flush_ || (read_done_ && outstanding_ <= 0)) close("done");
}

void Connection::close(std::string_view why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  std::string().swap(pending_);
  server_->forget(id_);
  log::debug("api: client {} closed: {}", id_, why);
}

}  // namespace nvhv::api::detail
