// nvhvctl fleet resume: after a power failure (or a host boot), start every registered VM that
// has a committed checkpoint, and those marked autostart, each as a detached
// `nvhv run --register`; wait until each runs.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "tools/nvhvctl/fleet.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/spawn.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/config.hpp"
#include "vmm/fleet/image_check.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhvctl {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using nvhv::fleet::Entry;
using nvhv::fleet::ImageCheck;
using nvhv::fleet::ImageState;
using nvhv::fleet::Registry;
using nvhv::fleet::VmStatus;
namespace fs = std::filesystem;

constexpr uint32_t kSchemaMaxVcpus = 254;

struct Start {
  const Entry* entry = nullptr;
  std::string action = "none";  // "resume", "swap_in", "boot" or "none"
  std::string result;            // "resumed", "booted", "already_running", "skipped", "swapped_out", "failed"
  std::string detail;
  std::optional<ImageCheck> image;
  pid_t pid = 0;
  Clock::time_point started_at;
  std::optional<double> elapsed_ms;
  std::optional<uint64_t> resumed_generation;
};

// What to do with one entry, judged without starting anything.
void plan(Start& s) {
  const Entry& e = *s.entry;
  if (e.process_alive()) {
    s.result = "already_running";
    s.pid = e.pid;
    s.detail = fmt::format("{} as pid {}", to_string(e.status), e.pid);
    return;
  }
  std::optional<nvhv::GuestConfig> config;
  try {
    if (!fs::exists(e.config)) throw nvhv::ConfigError(fmt::format("{}: the config file does not exist", e.config.string()));
    config = nvhv::load_config(e.config, kSchemaMaxVcpus);
  } catch (const std::exception& ex) {
    s.result = "failed";
    s.detail = ex.what();
    return;
  }
  if (config->name != e.name) {
    s.result = "failed";
    s.detail = fmt::format("{} now names VM '{}', not '{}': register it again", e.config.string(), config->name, e.name);
    return;
  }
  s.image = nvhv::fleet::check_image(*config);
  switch (s.image->state) {
    case ImageState::resumable: s.action = "resume"; return;
    case ImageState::swapped_out:
      if (e.swap_file && fs::exists(*e.swap_file)) {
        s.action = "swap_in";
        return;
      }
      s.result = "swapped_out";
      s.detail = e.swap_file ? fmt::format("its swap file {} does not exist", e.swap_file->string())
                             : "the registry knows no swap file for it (nvhv register --swap-file FILE)";
      return;
    case ImageState::in_use:
      s.result = "already_running";
      s.detail = "its image is locked by a process the registry does not know (run without --register?)";
      return;
    case ImageState::mid_swap:
    case ImageState::unusable:
      s.result = "failed";
      s.detail = s.image->detail;
      return;
    case ImageState::not_persistent:
    case ImageState::absent:
    case ImageState::blank:
    case ImageState::no_checkpoint:
      if (e.autostart) {
        s.action = "boot";
        return;
      }
      s.result = "skipped";
      s.detail = "no checkpoint to resume, and autostart is off";
      return;
  }
}

std::string nvhv_binary(const FleetOptions& o) {
  if (!o.nvhv_binary.empty()) return o.nvhv_binary;
  std::error_code ec;
  const fs::path beside = fs::read_symlink("/proc/self/exe", ec).parent_path() / "nvhv";
  if (!ec && ::access(beside.c_str(), X_OK) == 0) return beside.string();
  return "nvhv";
}

// Starts `nvhv run --register` in its own session, its output appended to the VM's log: the VM
// must outlive this command and any terminal or service it was started from.
void spawn(Start& s, const Registry& registry, const std::string& binary) {
  const Entry& e = *s.entry;
  std::vector<std::string> argv{binary, "run", "--register", "--state-dir", registry.dir().string()};
  if (s.action == "swap_in") argv.insert(argv.end(), {"--swap-in", e.swap_file->string()});
  argv.push_back(e.config.string());

  const fs::path log = registry.log_path(e.name);
  std::error_code ec;
  fs::create_directories(log.parent_path(), ec);
  nvhv::UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log_fd) throw std::runtime_error(fmt::format("cannot open {}: {}", log.string(), std::strerror(errno)));
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
  const std::string banner = fmt::format("=== {} nvhvctl fleet resume: {}\n", nvhv::fleet::utc_now_iso8601(), command);
  [[maybe_unused]] ssize_t written = ::write(log_fd.get(), banner.data(), banner.size());  // a heading, no more

  nvhv::SpawnOptions spawn;
  spawn.stdout_fd = log_fd.get();
  spawn.new_session = true;
  spawn.unset_env = {"NOTIFY_SOCKET"};  // systemd's socket is ours, not the VM's
  try {
    s.pid = nvhv::spawn_process(argv, spawn);
  } catch (const std::exception& err) {
    throw std::runtime_error(fmt::format("cannot start {}: {}", binary, err.what()));
  }
  s.started_at = Clock::now();
}

std::string log_tail(const fs::path& log, size_t lines) {
  std::ifstream in(log);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += (out.empty() ? "" : " | ") + all[i];
  return out;
}

// Polls until every started VM runs, exits or runs out of time.
void wait_until_running(std::vector<Start>& starts, const Registry& registry, const FleetOptions& o) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(o.timeout_ms);
  for (;;) {
    bool pending = false;
    for (auto& s : starts) {
      if (!s.result.empty() || s.pid == 0) continue;
      const std::string& name = s.entry->name;
      std::optional<Entry> now;
      try {
        now = registry.find(name);
      } catch (const std::exception&) {
        // Being replaced by a rename cannot make it unreadable; anything else shows at the end.
      }
      if (now && now->pid == s.pid && now->status == VmStatus::running) {
        s.elapsed_ms = ms_between(s.started_at, Clock::now());
        s.resumed_generation = now->resumed_generation;
        s.result = now->resumed_generation ? "resumed" : "booted";
        s.detail = now->detail;
        continue;
      }
      int status = 0;
      if (::waitpid(s.pid, &status, WNOHANG) == s.pid) {
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        try {
          now = registry.find(name);
        } catch (const std::exception&) {
          now.reset();
        }
        s.result = "failed";
        s.detail = fmt::format("nvhv exited with status {} before the VM ran{}; {}: {}", code,
                               now ? ": " + now->detail : "", registry.log_path(name).string(),
                               log_tail(registry.log_path(name), 3));
        continue;
      }
      if (Clock::now() >= deadline) {
        s.result = "failed";
        s.detail = fmt::format("not running after {} ms (pid {} left running; see {})", o.timeout_ms, s.pid,
                               registry.log_path(name).string());
        continue;
      }
      pending = true;
    }
    if (!pending) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

int fleet_resume(const FleetOptions& o) {
  Registry registry(o.state_dir);
  const auto listing = registry.list();
  for (const auto& err : listing.errors) print_err(err);
  std::vector<Start> starts(listing.entries.size());
  for (size_t i = 0; i < starts.size(); ++i) {
    starts[i].entry = &listing.entries[i];
    plan(starts[i]);
  }
  const std::string binary = nvhv_binary(o);
  for (auto& s : starts) {
    if (!s.result.empty()) continue;
    try {
      spawn(s, registry, binary);
    } catch (const std::exception& ex) {
      s.result = "failed";
      s.detail = ex.what();
    }
  }
  wait_until_running(starts, registry, o);

  std::map<std::string, size_t> counts;
  const Start* slowest = nullptr;
  json vms = json::array();
  for (const auto& s : starts) {
    ++counts[s.result];
    if (s.elapsed_ms && (!slowest || *s.elapsed_ms > *slowest->elapsed_ms)) slowest = &s;
    vms.push_back({{"name", s.entry->name},
                   {"action", s.action},
                   {"result", s.result},
                   {"pid", s.pid ? json(s.pid) : json(nullptr)},
                   {"elapsed_ms", s.elapsed_ms ? json(*s.elapsed_ms) : json(nullptr)},
                   {"resumed_generation", s.resumed_generation ? json(*s.resumed_generation) : json(nullptr)},
                   {"image", s.image ? s.image->to_json() : json(nullptr)},
                   {"detail", s.detail},
                   {"log", s.action == "none" ? json(nullptr) : json(registry.log_path(s.entry->name).string())}});
  }
  const bool ok = counts["failed"] == 0 && listing.errors.empty();
  if (o.json) {
    json summary{{"ok", ok}};
    for (const char* r : {"resumed", "booted", "already_running", "skipped", "swapped_out", "failed"}) summary[r] = counts[r];
    summary["slowest"] = slowest ? json{{"name", slowest->entry->name}, {"elapsed_ms", *slowest->elapsed_ms}} : json(nullptr);
    print_json({{"state_dir", registry.dir().string()}, {"vms", vms}, {"errors", listing.errors}, {"summary", summary}});
    return ok ? kFleetOk : kFleetFailed;
  }
  for (const auto& s : starts) {
    const std::string& name = s.entry->name;
    if (s.result == "resumed" || s.result == "booted")
      print_out(fmt::format("{}: {}{}, running after {:.1f} ms (pid {}, log {})", name, s.result,
                            s.resumed_generation ? fmt::format(" gen {}", *s.resumed_generation) : "",
                            *s.elapsed_ms, s.pid, registry.log_path(name).string()));
    else if (s.result == "failed")
      print_out(fmt::format("{}: FAILED: {}", name, s.detail));
    else
      print_out(fmt::format("{}: {}: {}", name, s.result == "already_running" ? "already running" : s.result, s.detail));
  }
  std::string summary = fmt::format("fleet resume: {} VMs: {} resumed, {} booted, {} already running, {} skipped, {} swapped out, {} failed",
                                    starts.size(), counts["resumed"], counts["booted"], counts["already_running"],
                                    counts["skipped"], counts["swapped_out"], counts["failed"]);
  if (slowest) summary += fmt::format("; slowest {} running after {:.1f} ms", slowest->entry->name, *slowest->elapsed_ms);
  if (!listing.errors.empty()) summary += fmt::format("; {} unreadable registry entries", listing.errors.size());
  print_out(summary);
  return ok ? kFleetOk : kFleetFailed;
}

}  // namespace nvhvctl
