#include "guest-images/agent/wpp_manager.hpp"

#include <fmt/format.h>

#include "guest-images/agent/criu.hpp"
#include "guest-images/agent/files.hpp"
#include "vmm/base/spawn.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::agent {

WppManager::~WppManager() {
  std::map<std::string, std::shared_ptr<Worker>> all;
  {
    std::lock_guard lk(mu_);
    all.swap(workers_);
  }
  for (auto& [id, w] : all) w->stop(false);
}

nlohmann::json WppManager::restore_all() {
  nlohmann::json out = {{"restored", nlohmann::json::array()},
                        {"failed", nlohmann::json::array()},
                        {"dropped", nlohmann::json::array()}};
  for (const auto& id : store_.proc_ids()) {
    std::optional<ProcMeta> meta;
    try {
      meta = store_.read_meta(id);
      store_.discard_uncommitted(id);
      auto c = store_.read_commit(id);
      if (!c) {
        // Registered but the agent died before the first checkpoint committed: nothing to
        // restore, and the caller never got a success for it.
        log::warn("agent: {} has no committed checkpoint; dropping it", id);
        store_.remove_proc(id);
        out["dropped"].push_back(id);
        continue;
      }
      store_.verify(id, *c);
      std::string pdir = store_.proc_dir(id);
      pid_t pid = 0;
      CriuResult r = criu_restore(config_.criu, store_.gen_dir(id, c->gen), pdir + "/criu-restore.log",
                                  pdir + "/criu-restore.out", pid);
      if (!r.ok)
        throw StoreError(fmt::format("criu restore of generation {} (pid {}) failed: {}", c->gen, c->pid, r.log_tail));
      auto w = std::make_shared<Worker>(store_, config_, id, *meta, pid, c);
      w->run(std::nullopt);
      log::info("agent: {} restored from generation {} as pid {}", id, c->gen, pid);
      std::lock_guard lk(mu_);
      workers_[id] = w;
      out["restored"].push_back(id);
    } catch (const std::exception& e) {
      log::error("agent: {}: {}", id, e.what());
      out["failed"].push_back({{"id", id}, {"error", e.what()}});
      if (meta) {
        auto w = std::make_shared<Worker>(store_, config_, id, *meta, 0, std::nullopt);
        w->mark_restore_failed(e.what());
        std::lock_guard lk(mu_);
        workers_[id] = w;
      }
    }
  }
  return out;
}

void WppManager::start(const ProcMeta& meta, api::Reply reply) {
  std::lock_guard lk(mu_);
  // Workers whose start failed or whose process exited are gone from the store; forget them.
  std::erase_if(workers_, [](auto& kv) {
    auto s = kv.second->state();
    return s == Worker::State::start_failed || s == Worker::State::exited || s == Worker::State::stopped;
  });
  std::string id = store_.add_proc(meta);
  pid_t pid;
  try {
    // The log is opened O_APPEND, which matters beyond log hygiene: CRIU does not record (and
    // later check) the size of a write-only O_APPEND file, so a restored process may find its log
    // grown since the dump. Its own session: CRIU dumps a tree that leads its session.
    pid = spawn_process(meta.argv, {.stdout_path = store_.proc_dir(id) + "/output.log", .new_session = true, .cwd = "/"});
  } catch (const std::exception& e) {
    store_.remove_proc(id);
    throw api::RpcError(api::code::operation_failed, e.what(), {{"argv", meta.argv}});
  }
  log::info("agent: {} started as pid {}: {}", id, pid, fmt::format("{}", fmt::join(meta.argv, " ")));
  auto w = std::make_shared<Worker>(store_, config_, id, meta, pid, std::nullopt);
  workers_[id] = w;
  w->run(std::move(reply));
}

nlohmann::json WppManager::list() const {
  nlohmann::json arr = nlohmann::json::array();
  std::lock_guard lk(mu_);
  for (auto& [id, w] : workers_) arr.push_back(w->describe());
  return {{"processes", arr}};
}

std::shared_ptr<Worker> WppManager::find(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) throw api::invalid_params(fmt::format("'id': no persistent process \"{}\"", id));
  return it->second;
}

void WppManager::checkpoint(const std::string& id, api::Reply reply) { find(id)->checkpoint_now(std::move(reply)); }

nlohmann::json WppManager::stop(const std::string& id) {
  auto w = find(id);
  w->stop(true);
  store_.remove_proc(id);
  std::lock_guard lk(mu_);
  workers_.erase(id);
  return {{"id", id}, {"stopped", true}};
}

}  // namespace nvhv::agent
