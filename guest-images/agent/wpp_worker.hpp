#pragma once
// One persistent process: its checkpoint timer thread and what it knows about the process.
// The thread runs CRIU (which takes the process's whole pause), so RPC handlers never wait on it:
// they queue a Reply and the thread answers when the checkpoint has committed or failed.
#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "guest-images/agent/criu.hpp"
#include "guest-images/agent/store.hpp"
#include "vmm/api/reply.hpp"

namespace nvhv::agent {

struct WorkerConfig {
  CriuOptions criu;
  unsigned full_every = 8;  // a full dump after this many incrementals, so chains stay short
};

class Worker {
 public:
  enum class State { starting, running, exited, start_failed, restore_failed, stopped };

  // `last`: the committed checkpoint the process was restored or adopted from, if any. The
  // first checkpoint is always a full dump: CRIU's memory tracking only spans dumps of one run.
  Worker(Store& store, const WorkerConfig& config, std::string id, ProcMeta meta, pid_t pid,
         std::optional<Commit> last);
  ~Worker();  // stops the thread; the process keeps running
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the timer thread. `first_reply`, when given, is answered after the first checkpoint;
  // if that fails, the process is killed and unregistered (it could never be restored).
  void run(std::optional<api::Reply> first_reply);
  // A worker that could not be restored: kept so wpp.list shows why; no thread.
  void mark_restore_failed(const std::string& error);
  // Queues an immediate checkpoint; `reply` gets its result.
  void checkpoint_now(api::Reply reply);
  // Stops the thread; with `kill`, SIGKILLs the process's group and reaps it.
  void stop(bool kill);

  const std::string& id() const { return id_; }
  State state() const;
  nlohmann::json describe() const;

 private:
  void loop(std::optional<api::Reply> first_reply);
  bool still_alive();  // reaps the process when it has exited
  // One checkpoint; returns its summary or throws api::RpcError with CRIU's reason.
  nlohmann::json checkpoint();
  void fail_start(const api::RpcError& e, api::Reply& reply);

  Store& store_;
  WorkerConfig config_;
  const std::string id_;
  const ProcMeta meta_;
  const pid_t pid_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<api::Reply> pending_;  // checkpoint_now requests
  State state_ = State::starting;
  std::optional<Commit> last_;
  bool need_full_ = true;
  unsigned incrementals_ = 0;
  std::uint64_t checkpoints_ = 0, failures_ = 0;
  std::string last_error_;
  std::optional<int> exit_status_;
  std::thread thread_;
};

const char* to_string(Worker::State s);

}  // namespace nvhv::agent
