#include "vmm/config.hpp"

#include <fmt/core.h>

#include <fstream>
#include <set>

#include "vmm/base/error.hpp"

namespace nvhv {
namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a value of another type";
  }
}

[[noreturn]] void fail(const std::string& pointer, const std::string& what) { throw ConfigError(pointer + ": " + what); }

// Reads one JSON object, remembering which keys were consumed so leftovers can be reported.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string pointer) : obj_(obj), pointer_(std::move(pointer)) {
    if (!obj_.is_object()) fail(pointer_.empty() ? "/" : pointer_, fmt::format("expected an object, got {}", type_name(obj_)));
  }

  const json* get(const std::string& key) {
    known_.insert(key);
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  std::string at(const std::string& key) const { return pointer_ + "/" + key; }

  std::optional<std::string> string(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(at(key), fmt::format("expected a string, got {}", type_name(*v)));
    return v->get<std::string>();
  }
  std::string required_string(const std::string& key) {
    auto s = string(key);
    if (!s) fail(at(key), "required field is missing");
    if (s->empty()) fail(at(key), "must not be empty");
    return *s;
  }
  std::optional<uint64_t> integer(const std::string& key, uint64_t min, uint64_t max) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) fail(at(key), fmt::format("expected an integer, got {}", type_name(*v)));
    if (v->is_number_unsigned() ? false : v->get<int64_t>() < 0) fail(at(key), fmt::format("must be between {} and {}", min, max));
    uint64_t n = v->get<uint64_t>();
    if (n < min || n > max) fail(at(key), fmt::format("must be between {} and {}, got {}", min, max, n));
    return n;
  }
  // Every key must have been asked for: unknown keys are typos or features this version lacks.
  void reject_unknown() const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!known_.count(it.key())) fail(at(it.key()), "unknown field");
  }

 private:
  const json& obj_;
  std::string pointer_;
  std::set<std::string> known_;
};

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& p) {
  std::filesystem::path path(p);
  return path.is_absolute() ? path : base / path;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

}  // namespace

GuestConfig parse_config(const json& doc, const std::filesystem::path& base_dir, uint32_t max_vcpus) {
  ObjectReader root(doc, "");
  GuestConfig cfg;
  if (auto version = root.integer("schema_version", 1, 1)) (void)version;
  cfg.name = root.required_string("name");
  if (!valid_name(cfg.name)) fail("/name", "must be 1-64 characters of letters, digits, '-', '_' or '.'");
  cfg.vcpus = static_cast<uint32_t>(root.integer("vcpus", 1, max_vcpus).value_or(1));

  const json* mem = root.get("memory");
  if (!mem) fail("/memory", "required field is missing");
  ObjectReader memory(*mem, "/memory");
  auto size = memory.integer("size_mib", 1, kMaxMemoryMib);
  if (!size) fail("/memory/size_mib", "required field is missing");
  cfg.memory.size_mib = *size;
  if (auto backing = memory.string("backing")) {
    if (backing->empty()) fail("/memory/backing", "must not be empty");
    cfg.memory.backing = resolve(base_dir, *backing);
  }
  memory.reject_unknown();

  cfg.kernel = resolve(base_dir, root.required_string("kernel"));
  if (auto initrd = root.string("initrd")) {
    if (initrd->empty()) fail("/initrd", "must not be empty");
    cfg.initrd = resolve(base_dir, *initrd);
  }
  cfg.cmdline = root.string("cmdline").value_or("");
  if (cfg.cmdline.size() > kMaxCmdlineBytes) fail("/cmdline", fmt::format("longer than {} bytes", kMaxCmdlineBytes));
  if (cfg.cmdline.find('\0') != std::string::npos) fail("/cmdline", "contains a NUL byte");

  if (const json* serial = root.get("serial")) {
    ObjectReader s(*serial, "/serial");
    std::string output = s.string("output").value_or("stdout");
    if (output.empty()) fail("/serial/output", "must be \"stdout\" or a file path");
    if (output != "stdout") {
      cfg.serial.to_stdout = false;
      cfg.serial.file = resolve(base_dir, output);
    }
    s.reject_unknown();
  }

  if (const json* api = root.get("api")) {
    ObjectReader a(*api, "/api");
    if (auto socket = a.string("socket")) {
      if (socket->empty()) fail("/api/socket", "must not be empty");
      cfg.api_socket = resolve(base_dir, *socket);
      if (cfg.api_socket->native().size() >= 108) fail("/api/socket", "path is longer than a Unix socket address allows (107 bytes)");
    }
    a.reject_unknown();
  }

  if (const json* pmem = root.get("pmem")) {
    if (!pmem->is_array()) fail("/pmem", fmt::format("expected an array, got {}", type_name(*pmem)));
    if (pmem->size() > kMaxPmemRegions) fail("/pmem", fmt::format("at most {} regions", kMaxPmemRegions));
    for (size_t i = 0; i < pmem->size(); ++i) {
      const std::string at = fmt::format("/pmem/{}", i);
      ObjectReader r((*pmem)[i], at);
      PmemConfig region;
      region.path = resolve(base_dir, r.required_string("path"));
      auto region_mib = r.integer("size_mib", 2, kMaxMemoryMib);
      if (!region_mib) fail(at + "/size_mib", "required field is missing");
      if (*region_mib % 2) fail(at + "/size_mib", "must be a multiple of 2 (regions are 2 MiB aligned)");
      region.size_mib = *region_mib;
      r.reject_unknown();
      cfg.pmem.push_back(std::move(region));
    }
  }

  if (const json* disks = root.get("disks")) {
    if (!disks->is_array()) fail("/disks", fmt::format("expected an array, got {}", type_name(*disks)));
    if (disks->size() > kMaxDisks) fail("/disks", fmt::format("at most {} disks", kMaxDisks));
    for (size_t i = 0; i < disks->size(); ++i) {
      const std::string at = fmt::format("/disks/{}", i);
      ObjectReader r((*disks)[i], at);
      DiskConfig disk;
      disk.path = resolve(base_dir, r.required_string("path"));
      if (const json* ro = r.get("readonly")) {
        if (!ro->is_boolean()) fail(at + "/readonly", fmt::format("expected a boolean, got {}", type_name(*ro)));
        disk.readonly = ro->get<bool>();
      }
      r.reject_unknown();
      cfg.disks.push_back(std::move(disk));
    }
  }

  if (const json* console = root.get("console")) {
    ObjectReader r(*console, "/console");
    ConsoleConfig c;
    if (auto log_path = r.string("log")) {
      if (log_path->empty()) fail("/console/log", "must not be empty");
      c.log = resolve(base_dir, *log_path);
    }
    r.reject_unknown();
    cfg.console = c;
  }

  if (auto on_reset = root.string("on_reset")) {
    if (*on_reset == "exit")
      cfg.on_reset = OnReset::exit;
    else if (*on_reset == "reboot")
      cfg.on_reset = OnReset::reboot;
    else
      fail("/on_reset", fmt::format("must be \"exit\" or \"reboot\", got \"{}\"", *on_reset));
  }

  root.reject_unknown();
  return cfg;
}

GuestConfig load_config(const std::filesystem::path& file, uint32_t max_vcpus) {
  std::ifstream in(file);
  if (!in) throw ConfigError(fmt::format("{}: cannot open: {}", file.string(), std::strerror(errno)));
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ConfigError(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
  try {
    return parse_config(doc, std::filesystem::absolute(file).parent_path(), max_vcpus);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", file.string(), e.what()));
  }
}

json GuestConfig::identity() const {
  json out{{"vcpus", vcpus}, {"memory_mib", memory.size_mib}, {"machine", "nvhv-x86_64-v1"}};
  // Only when present, so images of VMs without these devices keep the identity they had.
  if (!disks.empty()) out["disks"] = disks.size();
  if (console) out["console"] = true;
  if (!pmem.empty()) {
    json sizes = json::array();
    for (const auto& r : pmem) sizes.push_back(r.size_mib);
    out["pmem_mib"] = sizes;
  }
  return out;
}

}  // namespace nvhv
