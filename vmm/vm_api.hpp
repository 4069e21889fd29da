#pragma once
// The VM methods of the management API (docs/api.md): vm.status, vm.pause, vm.resume,
// vm.power_fail, vm.shutdown, vm.stats and vm.state_changed notifications; and the guest
// agent's agent.* methods, proxied to the guest over the virtio console (vmm/agent_channel.hpp).
#include <boost/asio/thread_pool.hpp>

#include <memory>
#include <string>

#include "vmm/api/api_server.hpp"
#include "vmm/api/jsonrpc.hpp"

namespace nvhv {

class Machine;

class VmApi {
 public:
  // Listens on `socket_path` at once; construct and destroy while no thread runs the io_context.
  VmApi(Machine& machine, boost::asio::io_context& io, const std::string& socket_path);
  ~VmApi();
  VmApi(const VmApi&) = delete;
  VmApi& operator=(const VmApi&) = delete;

  void notify_state(const std::string& state, const std::string& reason);

 private:
  void add_methods();
  nlohmann::json status() const;
  nlohmann::json stats() const;
  nlohmann::json agent_status() const;

  Machine& machine_;
  boost::asio::io_context& io_;
  api::Dispatcher dispatcher_;
  std::unique_ptr<api::Server> server_;
  // Requests that wait on the vCPUs (pause, power-fail) run here, one at a time, so the event
  // loop keeps serving other clients meanwhile.
  boost::asio::thread_pool control_{1};
};

}  // namespace nvhv
