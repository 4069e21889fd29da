// nvhv-agent: keeps chosen processes of a Linux guest persistent on the guest's persistent
// memory with CRIU, controlled over line-delimited JSON-RPC on the virtio-console port.
// See docs/agent.md.
#include <signal.h>
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

#include "guest-images/agent/methods.hpp"
#include "guest-images/agent/port.hpp"
#include "guest-images/agent/store.hpp"
#include "guest-images/agent/wpp_manager.hpp"
#include "vmm/base/log.hpp"

int main(int argc, char** argv) {
  using namespace nvhv::agent;
  CLI::App app{"nvhv-agent: whole-process persistence with CRIU, controlled by JSON-RPC over a port"};
  std::string port_path, store_dir, criu = "criu";
  bool use_stdio = false, verbose = false;
  unsigned full_every = 8;
  auto* port_opt = app.add_option("--port", port_path, "character device (e.g. /dev/hvc0) or other path to speak JSON-RPC on");
  auto* stdio_opt = app.add_flag("--stdio", use_stdio, "speak JSON-RPC on stdin/stdout instead of a port");
  port_opt->excludes(stdio_opt);
  app.add_option("--store", store_dir, "persistence store directory (on a DAX file system on /dev/pmem0)")->required();
  app.add_option("--criu", criu, "criu binary")->capture_default_str();
  app.add_option("--full-every", full_every, "take a full dump after this many incremental ones")
      ->capture_default_str()->check(CLI::Range(0u, 1000u));
  app.add_flag("-v,--verbose", verbose, "log every checkpoint");
  CLI11_PARSE(app, argc, argv);
  if (port_path.empty() && !use_stdio) {
    std::fprintf(stderr, "nvhv-agent: one of --port PATH or --stdio is required\n");
    return 2;
  }
  nvhv::log::set_level(verbose ? nvhv::log::Level::info : nvhv::log::Level::warn);
  // A host that disconnects must not kill the agent through SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  // Restored processes are children of `criu restore -d`, which exits: as subreaper the agent
  // inherits them, so it can reap them and see them exit.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  std::optional<Store> store;
  try {
    store.emplace(store_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nvhv-agent: %s\n", e.what());
    return 2;
  }
  std::optional<Port> port;
  try {
    port.emplace(use_stdio ? Port::stdio() : Port::open_path(port_path));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nvhv-agent: %s\n", e.what());
    return 2;
  }

  WppManager wpp(*store, WorkerConfig{CriuOptions{criu}, full_every});
  // Restore before answering anything: a client that sees "agent.ready" sees its processes back.
  nlohmann::json restored = wpp.restore_all();
  nvhv::api::Dispatcher d;
  register_methods(d, wpp, *store);
  port->send(nvhv::api::make_notification("agent.ready", restored));
  std::fprintf(stderr, "nvhv-agent: ready: %zu restored, %zu failed, %zu dropped\n", restored["restored"].size(),
               restored["failed"].size(), restored["dropped"].size());
  port->serve(d);
  return 0;
}
