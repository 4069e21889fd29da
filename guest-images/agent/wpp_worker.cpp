#include "guest-images/agent/wpp_worker.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <fmt/core.h>

#include "guest-images/agent/files.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::agent {

namespace {

std::uint64_t tree_bytes(const std::string& dir) {
  std::uint64_t total = 0;
  for (auto& n : list_dir(dir)) {
    struct stat st;
    if (::lstat((dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += static_cast<std::uint64_t>(st.st_size);
  }
  return total;
}

nlohmann::json commit_summary(const std::string& id, const Commit& c) {
  nlohmann::json j = {{"id", id},
                      {"pid", c.pid},
                      {"gen", c.gen},
                      {"full", c.chain.size() == 1},
                      {"chain_length", c.chain.size()},
                      {"started_ms", c.started_ms},
                      {"finished_ms", c.finished_ms}};
  j.update(c.stats);
  return j;
}

}  // namespace

const char* to_string(Worker::State s) {
  switch (s) {
    case Worker::State::starting: return "starting";
    case Worker::State::running: return "running";
    case Worker::State::exited: return "exited";
    case Worker::State::start_failed: return "start_failed";
    case Worker::State::restore_failed: return "restore_failed";
    case Worker::State::stopped: return "stopped";
  }
  return "?";
}

Worker::Worker(Store& store, const WorkerConfig& config, std::string id, ProcMeta meta, pid_t pid,
               std::optional<Commit> last)
    : store_(store), config_(config), id_(std::move(id)), meta_(std::move(meta)), pid_(pid), last_(std::move(last)) {}

Worker::~Worker() { stop(false); }

void Worker::run(std::optional<api::Reply> first_reply) {
  thread_ = std::thread([this, r = std::move(first_reply)]() mutable { loop(std::move(r)); });
}

void Worker::mark_restore_failed(const std::string& error) {
  std::lock_guard lk(mu_);
  state_ = State::restore_failed;
  last_error_ = error;
}

void Worker::checkpoint_now(api::Reply reply) {
  std::lock_guard lk(mu_);
  if (state_ != State::running && state_ != State::starting) {
    reply.error(api::code::invalid_state,
                fmt::format("process {} is {}; nothing to checkpoint", id_, to_string(state_)));
    return;
  }
  pending_.push_back(std::move(reply));
  cv_.notify_all();
}

void Worker::stop(bool kill) {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lk(mu_);
  for (auto& r : pending_) r.error(api::code::shutting_down, "process " + id_ + " is being stopped");
  pending_.clear();
  if (kill && (state_ == State::running || state_ == State::starting)) {
    // The process leads its own session and group (setsid at start, kept by CRIU): the whole
    // tree it started goes with it.
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    state_ = State::stopped;
  }
}

Worker::State Worker::state() const {
  std::lock_guard lk(mu_);
  return state_;
}

nlohmann::json Worker::describe() const {
  std::lock_guard lk(mu_);
  nlohmann::json j = {{"id", id_},
                      {"argv", meta_.argv},
                      {"interval_ms", meta_.interval_ms},
                      {"pid", pid_},
                      {"state", to_string(state_)},
                      {"checkpoints", checkpoints_},
                      {"failures", failures_},
                      {"last_error", last_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_error_)},
                      {"last_commit", last_ ? commit_summary(id_, *last_) : nlohmann::json(nullptr)}};
  if (exit_status_) j["exit_status"] = *exit_status_;
  return j;
}

bool Worker::still_alive() {
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    std::lock_guard lk(mu_);
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  if (r == 0) return true;
  // ECHILD: not our child (restored while another process was the subreaper); ask /proc.
  return ::kill(pid_, 0) == 0;
}

nlohmann::json Worker::checkpoint() {
  std::optional<Commit> last;
  bool full;
  {
    std::lock_guard lk(mu_);
    last = last_;
    full = need_full_ || !last_ || incrementals_ >= config_.full_every;
  }
  std::uint64_t gen = store_.next_gen(id_);
  std::string dir = store_.gen_dir(id_, gen);
  make_dir(dir);
  std::optional<std::string> prev;
  if (!full) prev = fmt::format("../{}", last->gen);
  Commit c;
  c.gen = gen;
  c.pid = pid_;
  c.started_ms = now_ms();
  std::string pdir = store_.proc_dir(id_);
  CriuResult r = criu_dump(config_.criu, pid_, dir, prev, pdir + "/criu-dump.log", pdir + "/criu-dump.out");
  if (!r.ok) {
    remove_tree(dir);
    std::lock_guard lk(mu_);
    ++failures_;
    need_full_ = true;  // CRIU's memory tracking state is unknown after a failed dump
    last_error_ = fmt::format("checkpoint of {} (pid {}) failed: criu dump exited {}: {}", id_, pid_, r.status, r.log_tail);
    throw api::RpcError(api::code::operation_failed, last_error_, {{"id", id_}, {"criu_log_tail", r.log_tail}});
  }
  c.stats = r.stats;
  c.stats["bytes_written"] = tree_bytes(dir);
  if (full) {
    c.chain = {gen};
  } else {
    c.chain = last->chain;
    c.checksums = last->checksums;
    c.chain.push_back(gen);
  }
  store_.commit(id_, c);
  std::lock_guard lk(mu_);
  last_ = c;
  incrementals_ = full ? 0 : incrementals_ + 1;
  need_full_ = false;
  ++checkpoints_;
  last_error_.clear();
  auto summary = commit_summary(id_, c);
  log::info("agent: {} gen {} committed ({}, frozen {} us, {} pages written, {} bytes)", id_, gen,
            full ? "full" : "incremental", c.stats.value("frozen_us", 0ULL), c.stats.value("pages_written", 0ULL),
            c.stats.value("bytes_written", 0ULL));
  return summary;
}

void Worker::fail_start(const api::RpcError& e, api::Reply& reply) {
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  try {
    store_.remove_proc(id_);
  } catch (const std::exception& ex) {
    log::warn("agent: {}: {}", id_, ex.what());
  }
  {
    std::lock_guard lk(mu_);
    state_ = State::start_failed;
  }
  log::error("agent: {}", e.what());
  reply.error(e.code(), fmt::format("process not made persistent (it was stopped): {}", e.what()), e.data());
}

void Worker::loop(std::optional<api::Reply> first_reply) {
  using clock = std::chrono::steady_clock;
  auto interval = std::chrono::milliseconds(meta_.interval_ms);
  if (first_reply) {
    try {
      first_reply->result(checkpoint());
    } catch (const api::RpcError& e) {
      fail_start(e, *first_reply);
      return;
    } catch (const std::exception& e) {
      fail_start(api::RpcError(api::code::operation_failed, e.what()), *first_reply);
      return;
    }
  }
  {
    std::lock_guard lk(mu_);
    if (state_ == State::starting) state_ = State::running;
  }
  auto next = clock::now() + interval;
  for (;;) {
    std::deque<api::Reply> waiting;
    {
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, next, [&] { return stop_ || !pending_.empty(); });
      if (stop_) return;
      waiting.swap(pending_);
    }
    // The next checkpoint is due one interval after this one began, not after it ended, so the
    // loss window stays interval + one checkpoint's time; a slow dump just makes the next one due at once.
    next = std::max(next + interval, clock::now());
    if (!still_alive()) {
      std::lock_guard lk(mu_);
      state_ = State::exited;
      for (auto& r : waiting) r.error(api::code::invalid_state, "process " + id_ + " has exited");
      log::info("agent: {} (pid {}) exited with status {}; unregistering it", id_, pid_, exit_status_.value_or(-1));
      try {
        store_.remove_proc(id_);  // a process that ended on its own must not come back at boot
      } catch (const std::exception& e) {
        log::warn("agent: {}: {}", id_, e.what());
      }
      return;
    }
    try {
      auto summary = checkpoint();
      for (auto& r : waiting) r.result(summary);
    } catch (const api::RpcError& e) {
      log::error("agent: {}", e.what());
      for (auto& r : waiting) r.error(e);
    } catch (const std::exception& e) {
      std::string msg = fmt::format("checkpoint of {} failed: {}", id_, e.what());
      log::error("agent: {}", msg);
      {
        std::lock_guard lk(mu_);
        ++failures_;
        last_error_ = msg;
        need_full_ = true;
      }
      for (auto& r : waiting) r.error(api::code::operation_failed, msg);
    }
  }
}

}  // namespace nvhv::agent
