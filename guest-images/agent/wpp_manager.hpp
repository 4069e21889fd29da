#pragma once
// The set of persistent processes: registration in the store, one Worker each, and the restore
// of every registered process when the agent starts.
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "guest-images/agent/store.hpp"
#include "guest-images/agent/wpp_worker.hpp"
#include "vmm/api/reply.hpp"

namespace nvhv::agent {

class WppManager {
 public:
  WppManager(Store& store, WorkerConfig config) : store_(store), config_(std::move(config)) {}
  ~WppManager();  // stops the timers; the processes keep running

  // Restores every registered process from its last committed checkpoint. One that cannot be
  // restored is reported (and listed as restore_failed) without holding up the others.
  // Returns {"restored": [ids], "failed": [{"id", "error"}], "dropped": [ids never committed]}.
  nlohmann::json restore_all();

  // Starts argv in a new session and answers `reply` once its first checkpoint committed.
  void start(const ProcMeta& meta, api::Reply reply);
  nlohmann::json list() const;
  // Throws api::RpcError (-32602 naming 'id') for an unknown id.
  void checkpoint(const std::string& id, api::Reply reply);
  nlohmann::json stop(const std::string& id);

 private:
  std::shared_ptr<Worker> find(const std::string& id) const;
  Store& store_;
  WorkerConfig config_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Worker>> workers_;
};

}  // namespace nvhv::agent
