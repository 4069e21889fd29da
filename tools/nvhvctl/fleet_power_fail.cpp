// nvhvctl fleet power-fail: a power-fail notice to every running VM at once, as a host's UPS
// would give it, and what each checkpoint cost.
#include <signal.h>

#include <fmt/core.h>

#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "tools/nvhvctl/fleet.hpp"
#include "vmm/api/line_client.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhvctl {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using nvhv::fleet::Entry;
using nvhv::fleet::Registry;
using nvhv::fleet::VmStatus;

struct Outcome {
  std::string name;
  pid_t pid = 0;
  std::string via;     // "api" or "sigpwr"
  std::string result;  // "committed", "failed" or "not_running"
  std::optional<double> elapsed_ms;  // from the common notice to the commit (api) or the exit (sigpwr)
  bool exited = false;
  std::optional<json> figures;
  std::string error;
  std::string note;
};

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

bool same_process_runs(const Entry& e) {
  auto ticks = nvhv::fleet::process_start_ticks(e.pid);
  return ticks && (e.pid_start_ticks == 0 || *ticks == e.pid_start_ticks);
}

bool wait_for_exit(const Entry& e, Clock::time_point deadline) {
  while (same_process_runs(e)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void through_api(nvhv::api::LineClient& client, const Entry& e, Clock::time_point t0, Clock::time_point deadline, Outcome& out) {
  out.via = "api";
  json response;
  try {
    response = client.call("vm.power_fail", nullptr, remaining(deadline));
  } catch (const std::exception& ex) {
    out.result = "failed";
    out.error = fmt::format("vm.power_fail: {}", ex.what());
    return;
  }
  out.elapsed_ms = ms_between(t0, Clock::now());
  if (response.contains("error")) {
    out.result = "failed";
    out.error = fmt::format("vm.power_fail failed: {} (code {})", response["error"].value("message", std::string("?")),
                            response["error"].value("code", 0));
    return;
  }
  out.result = "committed";
  out.figures = response["result"];
  // The next `fleet resume` needs the image's lock, which goes with the process.
  out.exited = wait_for_exit(e, deadline);
  if (!out.exited) out.note = "committed, but the process had not exited when the timeout ran out";
}

void through_signal(const Registry& registry, const Entry& e, Clock::time_point t0, Clock::time_point deadline, Outcome& out) {
  out.via = "sigpwr";
  if (!same_process_runs(e) || ::kill(e.pid, SIGPWR) != 0) {
    out.result = "failed";
    out.error = fmt::format("cannot signal pid {}: {}", e.pid, same_process_runs(e) ? std::strerror(errno) : "it has exited");
    return;
  }
  out.exited = wait_for_exit(e, deadline);
  out.elapsed_ms = ms_between(t0, Clock::now());
  if (!out.exited) {
    out.result = "failed";
    out.error = "still running when the timeout ran out";
    return;
  }
  // Without an API the figures come from the entry the VM updates as it exits.
  std::optional<Entry> after;
  try {
    after = registry.find(e.name);
  } catch (const std::exception& ex) {
    out.result = "failed";
    out.error = ex.what();
    return;
  }
  if (after && after->status == VmStatus::checkpointed && after->last_checkpoint) {
    out.result = "committed";
    out.figures = *after->last_checkpoint;
    return;
  }
  out.result = "failed";
  out.error = after ? fmt::format("exited without a committed checkpoint: {}: {}", after->effective_status(), after->detail)
                    : "exited, and its registry entry is gone";
}

Outcome power_fail_one(const Registry& registry, const Entry& e, Clock::time_point t0, const FleetOptions& o) {
  Outcome out;
  out.name = e.name;
  out.pid = e.pid;
  const auto deadline = t0 + std::chrono::milliseconds(o.timeout_ms);
  if (e.api_socket) {
    std::optional<nvhv::api::LineClient> client;
    try {
      client.emplace(nvhv::api::LineClient::connect(e.api_socket->string()));
    } catch (const std::exception& ex) {
      out.note = fmt::format("API socket {} unreachable ({}): sent SIGPWR instead", e.api_socket->string(), ex.what());
    }
    if (client) {
      through_api(*client, e, t0, deadline, out);
      return out;
    }
  }
  through_signal(registry, e, t0, deadline, out);
  return out;
}

std::string figures_text(const json& f) {
  auto ms = [&](const char* key) { return f.value(key, uint64_t{0}) / 1000.0; };
  return fmt::format("checkpoint {:.1f} ms: vcpu {:.1f} + devices {:.1f} + flush {:.1f} + commit {:.1f}; {:.1f} MiB flushed",
                     ms("total_us"), ms("vcpu_us"), ms("devices_us"), ms("flush_us"), ms("commit_us"),
                     f.value("flushed_bytes", uint64_t{0}) / 1048576.0);
}

std::optional<bool> met_deadline(const Outcome& r, const FleetOptions& o) {
  if (!o.deadline_ms) return std::nullopt;
  return r.result == "committed" && r.elapsed_ms && *r.elapsed_ms <= *o.deadline_ms;
}

}  // namespace

int fleet_power_fail(const FleetOptions& o) {
  Registry registry(o.state_dir);
  const auto listing = registry.list();
  for (const auto& err : listing.errors) print_err(err);

  std::vector<Outcome> results(listing.entries.size());
  std::vector<std::thread> workers;
  const auto t0 = Clock::now();
  for (size_t i = 0; i < listing.entries.size(); ++i) {
    const Entry& e = listing.entries[i];
    if (!e.process_alive()) {
      results[i].name = e.name;
      results[i].result = "not_running";
      results[i].note = e.effective_status();
      continue;
    }
    workers.emplace_back([&, i] { results[i] = power_fail_one(registry, listing.entries[i], t0, o); });
  }
  for (auto& w : workers) w.join();

  size_t running = 0, committed = 0, failed = 0, missed = 0;
  const Outcome* slowest = nullptr;
  json vms = json::array();
  for (const auto& r : results) {
    if (r.result != "not_running") ++running;
    if (r.result == "committed") {
      ++committed;
      if (!slowest || *r.elapsed_ms > *slowest->elapsed_ms) slowest = &r;
    }
    if (r.result == "failed") ++failed;
    const auto met = met_deadline(r, o);
    if (met && !*met && r.result != "not_running") ++missed;
    vms.push_back({{"name", r.name},
                   {"pid", r.pid ? json(r.pid) : json(nullptr)},
                   {"via", r.via.empty() ? json(nullptr) : json(r.via)},
                   {"result", r.result},
                   {"elapsed_ms", r.elapsed_ms ? json(*r.elapsed_ms) : json(nullptr)},
                   {"met_deadline", met ? json(*met) : json(nullptr)},
                   {"exited", r.exited},
                   {"figures", r.figures ? *r.figures : json(nullptr)},
                   {"error", r.error.empty() ? json(nullptr) : json(r.error)},
                   {"note", r.note.empty() ? json(nullptr) : json(r.note)}});
  }
  const bool ok = failed == 0 && listing.errors.empty();
  if (o.json) {
    json slow = slowest ? json{{"name", slowest->name}, {"elapsed_ms", *slowest->elapsed_ms}} : json(nullptr);
    print_json({{"state_dir", registry.dir().string()},
                {"deadline_ms", o.deadline_ms ? json(*o.deadline_ms) : json(nullptr)},
                {"vms", vms},
                {"errors", listing.errors},
                {"summary",
                 {{"running", running},
                  {"committed", committed},
                  {"failed", failed},
                  {"not_running", results.size() - running},
                  {"missed_deadline", missed},
                  {"slowest", slow},
                  {"ok", ok}}}});
    return ok ? kFleetOk : kFleetFailed;
  }
  for (const auto& r : results) {
    const auto met = met_deadline(r, o);
    const std::string deadline = !met ? "" : *met ? "; deadline met" : "; DEADLINE MISSED";
    const std::string note = r.note.empty() ? "" : " (" + r.note + ")";
    if (r.result == "committed")
      print_out(fmt::format("{}: committed gen {} in {:.1f} ms via {} ({}){}{}", r.name, r.figures->value("generation", uint64_t{0}),
                            *r.elapsed_ms, r.via, figures_text(*r.figures), deadline, note));
    else if (r.result == "failed")
      print_out(fmt::format("{}: FAILED via {}: {}{}", r.name, r.via, r.error, note));
    else
      print_out(fmt::format("{}: not running ({})", r.name, r.note));
  }
  std::string summary = fmt::format("fleet power-fail: {} running VMs: {} committed, {} failed", running, committed, failed);
  if (slowest) summary += fmt::format("; slowest {} in {:.1f} ms", slowest->name, *slowest->elapsed_ms);
  if (o.deadline_ms) summary += fmt::format("; deadline {} ms met by {} of {}", *o.deadline_ms, running - missed, running);
  if (!listing.errors.empty()) summary += fmt::format("; {} unreadable registry entries", listing.errors.size());
  print_out(summary);
  return ok ? kFleetOk : kFleetFailed;
}

}  // namespace nvhvctl
