// Serves ApiTestMethods on the socket named on the command line, so tests can drive nvhvctl
// against a real server process. Prints "ready" once listening; SIGTERM/SIGINT stop it.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <memory>

#include "tests/integration/api_test_methods.hpp"
#include "vmm/api/api_server.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
    return 2;
  }
  boost::asio::io_context io;
  nvhv::api::Dispatcher dispatcher;
  std::unique_ptr<nvhv::api::Server> server;
  nvhv::test::ApiTestMethods methods(dispatcher, [&](const std::string& m, const nlohmann::json& p) { server->notify(m, p); });
  server = std::make_unique<nvhv::api::Server>(io, argv[1], dispatcher);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int) {
    server->close();
    io.stop();
  });
  std::puts("ready");
  std::fflush(stdout);
  io.run();
  return 0;
}
