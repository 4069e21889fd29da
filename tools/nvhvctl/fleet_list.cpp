// nvhvctl fleet list: the registry as it is, with stale "running" claims resolved.
#include <fmt/core.h>

#include <algorithm>
#include <vector>

#include "tools/nvhvctl/fleet.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhvctl {
namespace {

using nvhv::fleet::Entry;
using nlohmann::json;

std::string checkpoint_text(const Entry& e) {
  if (!e.last_checkpoint) return "-";
  const json& f = *e.last_checkpoint;
  return fmt::format("gen {} ({:.1f} ms)", f.value("generation", uint64_t{0}), f.value("total_us", uint64_t{0}) / 1000.0);
}

json entry_json(const Entry& e) {
  json j = e.to_json();
  j.erase("format");
  j.erase("version");
  j["recorded_status"] = j["status"];
  j["status"] = e.effective_status();
  j["alive"] = e.process_alive();
  return j;
}

}  // namespace

int fleet_list(const FleetOptions& o) {
  nvhv::fleet::Registry registry(o.state_dir);
  const auto listing = registry.list();
  if (o.json) {
    json vms = json::array();
    for (const auto& e : listing.entries) vms.push_back(entry_json(e));
    print_json({{"state_dir", registry.dir().string()}, {"vms", vms}, {"errors", listing.errors}});
  } else if (!listing.entries.empty()) {
    std::vector<std::vector<std::string>> rows{{"NAME", "STATUS", "PID", "AUTOSTART", "LAST CHECKPOINT", "API SOCKET", "CONFIG"}};
    for (const auto& e : listing.entries) {
      std::string status = e.effective_status();
      if (status == "dead") status = fmt::format("dead (was {})", to_string(e.status));
      rows.push_back({e.name, status, e.process_alive() ? std::to_string(e.pid) : "-", e.autostart ? "yes" : "no",
                      checkpoint_text(e), e.api_socket ? e.api_socket->string() : "-", e.config.string()});
    }
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
      for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows) {
      std::string line;
      for (size_t i = 0; i < r.size(); ++i) line += i + 1 < r.size() ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
      print_out(line);
    }
  } else if (listing.errors.empty()) {
    print_err(fmt::format("no VMs registered in {}", registry.dir().string()));
  }
  for (const auto& err : listing.errors) print_err(err);
  return listing.errors.empty() ? kFleetOk : kFleetFailed;
}

}  // namespace nvhvctl
