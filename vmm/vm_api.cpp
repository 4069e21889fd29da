#include "vmm/vm_api.hpp"

#include <boost/asio/post.hpp>
#include <fmt/core.h>

#include <chrono>
#include <ctime>

#include "vmm/api/rpc_error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/machine.hpp"

namespace nvhv {

using nlohmann::json;

namespace {

json figures_json(const CheckpointFigures& f) {
  return {{"generation", f.generation}, {"vcpu_us", f.vcpu_us},     {"devices_us", f.devices_us}, {"flush_us", f.flush_us},
          {"commit_us", f.commit_us},   {"total_us", f.total_us},   {"flushed_bytes", f.flushed_bytes}};
}

json swap_chunks_json(const persistence::SwapFigures& f) {
  return {{"total", f.chunks},     {"zero", f.zero_chunks},         {"compressed", f.compressed_chunks},
          {"raw", f.raw_chunks},   {"sparse", f.sparse_chunks},     {"reused", f.reused_chunks},
          {"rewritten", f.rewritten_chunks},
          {"stored_bytes", f.stored_bytes}, {"ram_read_bytes", f.ram_read_bytes}, {"hole_bytes", f.hole_bytes}};
}

// Whether KVM's dirty log since the swap-in chose the chunks to write anew, and how it went.
json dirty_map_json(const Machine::SwapOutReport& r) {
  const auto& f = r.numbers;
  json out{{"used", f.dirty_map}, {"clean_verified", f.clean_verified}, {"marked_dirty", f.marked_dirty_chunks},
           {"misses", f.dirty_map_misses}, {"why_not", nullptr}};
  if (!r.no_dirty_map.empty()) out["why_not"] = r.no_dirty_map;
  return out;
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ms % 1000);
}

}  // namespace

VmApi::VmApi(Machine& machine, boost::asio::io_context& io, const std::string& socket_path) : machine_(machine), io_(io) {
  add_methods();
  server_ = std::make_unique<api::Server>(io, socket_path, dispatcher_);
  if (auto* agent = machine_.agent())
    agent->set_notify([this](const std::string& method, const json& params) { server_->notify(method, params); });
}

VmApi::~VmApi() {
  if (auto* agent = machine_.agent()) agent->set_notify({});
  control_.join();
  server_.reset();
}

void VmApi::notify_state(const std::string& state, const std::string& reason) {
  if (server_) server_->notify("vm.state_changed", json{{"state", state}, {"reason", reason}});
}

json VmApi::status() const {
  const auto& cfg = machine_.config();
  json memory{{"size_mib", cfg.memory.size_mib}, {"backing", nullptr}, {"persistent", machine_.persistent()}};
  if (cfg.memory.backing) memory["backing"] = cfg.memory.backing->string();
  if (const auto* b = machine_.backing(); b && machine_.persistent()) {
    memory["kind"] = persistence::to_string(b->kind());
    memory["granularity"] = persistence::to_string(b->granularity());
  }
  return {{"name", cfg.name},
          {"state", machine_.state()},
          {"vcpus", cfg.vcpus},
          {"memory", memory},
          {"checkpoint", {{"generation", machine_.checkpoint_generation()}, {"resumed", machine_.resumed()}}},
          {"uptime_s", machine_.uptime_seconds()},
          {"agent", agent_status()}};
}

json VmApi::agent_status() const {
  auto* agent = machine_.agent();
  if (!agent) return nullptr;
  const auto s = agent->status();
  json ready = nullptr;
  if (s.ready_params) ready = {{"params", *s.ready_params}, {"at", iso_time(s.ready_at)}};
  return {{"ready", ready}, {"outstanding", s.outstanding}, {"queued_bytes", s.queued_bytes}, {"dropped_lines", s.dropped_lines}};
}

json VmApi::stats() const {
  json vcpus = json::array();
  json total{{"io", 0}, {"mmio", 0}, {"interrupted", 0}, {"other", 0}};
  for (size_t i = 0; i < machine_.vcpus().size(); ++i) {
    const auto& s = machine_.vcpus().at(i).stats();
    json exits{{"io", s.io_exits.load()}, {"mmio", s.mmio_exits.load()}, {"interrupted", s.interrupted.load()}, {"other", s.other_exits.load()}};
    for (auto& [k, v] : exits.items()) total[k] = total[k].get<uint64_t>() + v.get<uint64_t>();
    vcpus.push_back({{"index", i}, {"run_time_s", static_cast<double>(s.run_ns.load()) / 1e9}, {"exits", exits}});
  }
  json out{{"vcpus", vcpus}, {"exits", total}, {"last_checkpoint", nullptr}, {"writeback", nullptr}};
  if (auto f = machine_.last_checkpoint()) out["last_checkpoint"] = figures_json(*f);
  if (const auto* wb = machine_.writeback()) out["writeback"] = {{"passes", wb->passes()}, {"bytes", wb->background_bytes()}};
  return out;
}

void VmApi::add_methods() {
  add_agent_methods(dispatcher_, machine_.agent());
  dispatcher_.add_method("vm.status", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    r.result(status());
  });
  dispatcher_.add_method("vm.stats", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    r.result(stats());
  });
  dispatcher_.add_method("vm.pause", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    boost::asio::post(control_, [this, r] {
      try {
        machine_.pause_guest();
        r.result({{"state", machine_.state()}});
      } catch (const std::logic_error& e) {
        r.error(api::code::invalid_state, e.what());
      }
    });
  });
  dispatcher_.add_method("vm.resume", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    boost::asio::post(control_, [this, r] {
      try {
        machine_.resume_guest();
        r.result({{"state", machine_.state()}});
      } catch (const std::logic_error& e) {
        r.error(api::code::invalid_state, e.what());
      }
    });
  });
  dispatcher_.add_method("vm.power_fail", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    if (!machine_.persistent()) throw api::RpcError(api::code::invalid_state, "guest RAM is not persistent (no memory.backing): nothing to checkpoint to");
    boost::asio::post(control_, [this, r] {
      try {
        auto f = machine_.power_fail_checkpoint(/*exit_after=*/false);
        r.result(figures_json(f));
        // The reply's write was queued on the event loop before this: exit after it.
        boost::asio::post(io_, [this, gen = f.generation] { machine_.request_exit(0, "vm.power_fail: checkpoint gen=" + std::to_string(gen) + " committed"); });
      } catch (const std::logic_error& e) {
        r.error(api::code::invalid_state, e.what());
      } catch (const std::exception& e) {
        r.error(api::code::operation_failed, std::string("checkpoint failed: ") + e.what());
      }
    });
  });
  dispatcher_.add_method("vm.swap_out", [this](const api::Params& p, api::Reply r) {
    p.allow_only({"path", "level", "verify_clean"});
    const auto path = p.get<std::string>("path");
    if (path.empty()) throw api::invalid_params("path: must not be empty");
    const int level = p.get_or<int>("level", 1);
    if (level < -7 || level > 19) throw api::invalid_params("level: must be between -7 and 19");
    const bool verify_clean = p.get_or<bool>("verify_clean", false);
    if (!machine_.persistent()) throw api::RpcError(api::code::invalid_state, "guest RAM is not persistent (no memory.backing): nothing to swap out");
    boost::asio::post(control_, [this, r, path, level, verify_clean] {
      try {
        auto report = machine_.swap_out(path, level, verify_clean, [this, path](uint64_t done, uint64_t total) {
          if (server_) server_->notify("vm.swap_progress", json{{"path", path}, {"done_bytes", done}, {"total_bytes", total}});
        });
        r.result({{"checkpoint", figures_json(report.checkpoint)},
                  {"swap_id", fmt::format("{:016x}", report.swap_id)},
                  {"incremental", report.incremental},
                  {"released", report.released},
                  {"figures", report.figures},
                  {"chunks", swap_chunks_json(report.numbers)},
                  {"dirty_map", dirty_map_json(report)}});
        boost::asio::post(io_, [this] { machine_.request_exit(0, "vm.swap_out: the VM is in its swap file"); });
      } catch (const std::logic_error& e) {
        r.error(api::code::invalid_state, e.what());
      } catch (const std::exception& e) {
        r.error(api::code::operation_failed, std::string("swap-out failed: ") + e.what());
      }
    });
  });
  dispatcher_.add_method("vm.shutdown", [this](const api::Params& p, api::Reply r) {
    p.expect_none();
    r.result({{"state", "stopping"}});
    boost::asio::post(io_, [this] { machine_.request_exit(0, "vm.shutdown"); });
  });
}

}  // namespace nvhv
