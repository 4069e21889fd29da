#include "vmm/fleet/registry.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/core.h>

#include "vmm/base/unique_fd.hpp"

namespace nvhv::fleet {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kFormat = "nvhv-registry-entry";
constexpr int kVersion = 1;
constexpr size_t kMaxEntryBytes = 1 << 20;

constexpr VmStatus kAllStatuses[] = {VmStatus::registered, VmStatus::starting, VmStatus::running, VmStatus::checkpointed,
                                     VmStatus::stopped,    VmStatus::failed,   VmStatus::swapped_out};

std::string errno_text(int err) { return std::strerror(err); }

// Field readers that name the entry file and the JSON pointer of what is wrong.
class FieldReader {
 public:
  FieldReader(const json& doc, const std::string& where) : doc_(doc), where_(where) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw RegistryError(fmt::format("{}: /{}: {}", where_, key, what));
  }
  const json* optional(const std::string& key) const {
    auto it = doc_.find(key);
    return it == doc_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& required(const std::string& key) const {
    const json* v = optional(key);
    if (!v) fail(key, "required field is missing");
    return *v;
  }
  std::string string(const std::string& key) const {
    const json& v = required(key);
    if (!v.is_string()) fail(key, "expected a string");
    return v.get<std::string>();
  }
  std::optional<std::string> optional_string(const std::string& key) const {
    if (!optional(key)) return std::nullopt;
    return string(key);
  }
  std::optional<uint64_t> optional_unsigned(const std::string& key) const {
    const json* v = optional(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer() || (!v->is_number_unsigned() && v->get<int64_t>() < 0))
      fail(key, "expected a non-negative integer");
    return v->get<uint64_t>();
  }
  std::optional<int> optional_int(const std::string& key) const {
    const json* v = optional(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) fail(key, "expected an integer");
    return v->get<int>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    const json* v = optional(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected a boolean");
    return v->get<bool>();
  }

 private:
  const json& doc_;
  const std::string& where_;
};

json path_or_null(const std::optional<fs::path>& p) { return p ? json(p->string()) : json(nullptr); }

// The registry's lock: every read-modify-write holds it, so two nvhv processes updating entries
// at once never lose an update. Readers do not take it: renames keep every file whole.
class RegistryLock {
 public:
  explicit RegistryLock(const fs::path& dir) {
    const fs::path path = dir / ".lock";
    fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd_) throw RegistryError(fmt::format("{}: cannot open the registry lock: {}", path.string(), errno_text(errno)));
    while (::flock(fd_.get(), LOCK_EX) != 0)
      if (errno != EINTR) throw RegistryError(fmt::format("{}: cannot lock the registry: {}", path.string(), errno_text(errno)));
  }

 private:
  UniqueFd fd_;
};

void make_dir(const fs::path& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) == 0 || errno == EEXIST) {
    if (!fs::is_directory(dir)) throw RegistryError(fmt::format("{}: exists but is not a directory", dir.string()));
    return;
  }
  throw RegistryError(fmt::format("cannot create the state directory {}: {}", dir.string(), errno_text(errno)));
}

void write_all(int fd, const std::string& text, const fs::path& path) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RegistryError(fmt::format("{}: write failed: {}", path.string(), errno_text(errno)));
    done += static_cast<size_t>(n);
  }
}

std::optional<Entry> read_entry_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw RegistryError(fmt::format("{}: cannot read: {}", path.string(), errno_text(errno)));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RegistryError(fmt::format("{}: cannot read: {}", path.string(), errno_text(errno)));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxEntryBytes) throw RegistryError(fmt::format("{}: not a registry entry: larger than {} bytes", path.string(), kMaxEntryBytes));
  }
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) throw RegistryError(fmt::format("{}: not a registry entry: the file is not valid JSON", path.string()));
  Entry e = Entry::from_json(doc, path.string());
  if (e.name != path.stem().string())
    throw RegistryError(fmt::format("{}: /name: the entry names VM '{}', but its file is named for '{}'", path.string(),
                                    e.name, path.stem().string()));
  return e;
}

}  // namespace

fs::path resolve_state_dir(const std::string& flag_value) {
  std::string chosen = flag_value;
  if (chosen.empty())
    if (const char* env = std::getenv(kStateDirEnv); env && *env) chosen = env;
  if (chosen.empty()) chosen = kDefaultStateDir;
  return fs::absolute(chosen).lexically_normal();
}

const char* to_string(VmStatus s) {
  switch (s) {
    case VmStatus::registered: return "registered";
    case VmStatus::starting: return "starting";
    case VmStatus::running: return "running";
    case VmStatus::checkpointed: return "checkpointed";
    case VmStatus::stopped: return "stopped";
    case VmStatus::failed: return "failed";
    case VmStatus::swapped_out: return "swapped_out";
  }
  return "?";
}

std::optional<VmStatus> parse_status(const std::string& text) {
  for (VmStatus s : kAllStatuses)
    if (text == to_string(s)) return s;
  return std::nullopt;
}

std::optional<uint64_t> process_start_ticks(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::string state;
  fields >> state;
  if (state == "Z" || state == "X") return std::nullopt;  // exited, not yet reaped
  std::string skip;
  for (int field = 4; field < 22; ++field) fields >> skip;
  uint64_t start = 0;
  if (!(fields >> start)) return std::nullopt;
  return start;
}

bool valid_vm_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

std::string utc_now_iso8601() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  return fmt::format("{}.{:03}Z", buf, ts.tv_nsec / 1000000);
}

bool Entry::process_alive() const {
  if (status != VmStatus::starting && status != VmStatus::running) return false;
  auto ticks = process_start_ticks(pid);
  return ticks && (pid_start_ticks == 0 || *ticks == pid_start_ticks);
}

std::string Entry::effective_status() const {
  if ((status == VmStatus::starting || status == VmStatus::running) && !process_alive()) return "dead";
  return to_string(status);
}

json Entry::to_json() const {
  return {{"format", kFormat},
          {"version", kVersion},
          {"name", name},
          {"config", config.string()},
          {"api_socket", path_or_null(api_socket)},
          {"backing", path_or_null(backing)},
          {"autostart", autostart},
          {"status", to_string(status)},
          {"pid", pid > 0 ? json(pid) : json(nullptr)},
          {"pid_start_ticks", pid > 0 ? json(pid_start_ticks) : json(nullptr)},
          {"detail", detail},
          {"exit_status", exit_status ? json(*exit_status) : json(nullptr)},
          {"resumed_generation", resumed_generation ? json(*resumed_generation) : json(nullptr)},
          {"last_checkpoint", last_checkpoint ? *last_checkpoint : json(nullptr)},
          {"swap_file", path_or_null(swap_file)},
          {"updated_at", updated_at}};
}

Entry Entry::from_json(const json& doc, const std::string& where) {
  if (!doc.is_object()) throw RegistryError(fmt::format("{}: not a registry entry: expected a JSON object", where));
  FieldReader r(doc, where);
  const json* format = r.optional("format");
  if (!format || !format->is_string() || format->get<std::string>() != kFormat)
    throw RegistryError(fmt::format("{}: not a registry entry: /format is {}, expected \"{}\"", where,
                                    format ? format->dump() : "missing", kFormat));
  const json* version = r.optional("version");
  if (!version || !version->is_number_integer() || version->get<int64_t>() != kVersion)
    throw RegistryError(fmt::format("{}: registry entry version {} is not supported (this nvhv reads version {})", where,
                                    version ? version->dump() : "missing", kVersion));
  Entry e;
  e.name = r.string("name");
  if (!valid_vm_name(e.name)) r.fail("name", "must be 1-64 characters of letters, digits, '-', '_' or '.'");
  e.config = r.string("config");
  if (!e.config.is_absolute()) r.fail("config", "must be an absolute path");
  if (auto s = r.optional_string("api_socket")) e.api_socket = *s;
  if (auto s = r.optional_string("backing")) e.backing = *s;
  e.autostart = r.boolean("autostart", false);
  const std::string status = r.string("status");
  auto parsed = parse_status(status);
  if (!parsed) {
    std::string known;
    for (VmStatus s : kAllStatuses) known += (known.empty() ? "" : ", ") + std::string(to_string(s));
    r.fail("status", fmt::format("unknown status \"{}\" (expected one of {})", status, known));
  }
  e.status = *parsed;
  if (auto pid = r.optional_unsigned("pid")) {
    if (*pid == 0 || *pid > 0x7fffffff) r.fail("pid", "not a process id");
    e.pid = static_cast<pid_t>(*pid);
  }
  e.pid_start_ticks = r.optional_unsigned("pid_start_ticks").value_or(0);
  e.detail = r.optional_string("detail").value_or("");
  e.exit_status = r.optional_int("exit_status");
  e.resumed_generation = r.optional_unsigned("resumed_generation");
  if (const json* cp = r.optional("last_checkpoint")) {
    if (!cp->is_object()) r.fail("last_checkpoint", "expected an object");
    e.last_checkpoint = *cp;
  }
  if (auto s = r.optional_string("swap_file")) e.swap_file = *s;
  e.updated_at = r.optional_string("updated_at").value_or("");
  return e;
}

Registry::Registry(fs::path state_dir) : dir_(std::move(state_dir)) {}

fs::path Registry::entry_path(const std::string& name) const { return dir_ / "vms" / (name + ".json"); }

fs::path Registry::log_path(const std::string& name) const { return dir_ / "logs" / (name + ".log"); }

void Registry::ensure_dirs() const {
  std::error_code ec;
  fs::create_directories(dir_.parent_path(), ec);  // the parents are the operator's; errors show below
  make_dir(dir_, 0755);
  make_dir(dir_ / "vms", 0755);
  make_dir(dir_ / "logs", 0750);
}

Registry::Listing Registry::list() const {
  Listing out;
  const fs::path vms = dir_ / "vms";
  std::error_code ec;
  if (!fs::exists(vms, ec)) return out;
  fs::directory_iterator it(vms, ec);
  if (ec) throw RegistryError(fmt::format("{}: cannot list the registry: {}", vms.string(), ec.message()));
  for (const auto& f : it) {
    // Temp files of a write in progress (or cut short by a crash) end in .tmp.PID: not entries.
    if (f.path().extension() != ".json") continue;
    try {
      if (!f.is_regular_file()) throw RegistryError(fmt::format("{}: not a regular file", f.path().string()));
      if (auto e = read_entry_file(f.path())) out.entries.push_back(std::move(*e));
    } catch (const RegistryError& e) {
      out.errors.push_back(e.what());
    }
  }
  std::sort(out.entries.begin(), out.entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  std::sort(out.errors.begin(), out.errors.end());
  return out;
}

std::optional<Entry> Registry::find(const std::string& name) const {
  if (!valid_vm_name(name)) throw RegistryError(fmt::format("'{}' is not a VM name (1-64 characters of letters, digits, '-', '_' or '.')", name));
  return read_entry_file(entry_path(name));
}

std::optional<Entry> Registry::update(const std::string& name,
                                      const std::function<std::optional<Entry>(const std::optional<Entry>&)>& change,
                                      bool replace_unreadable) {
  if (!valid_vm_name(name)) throw RegistryError(fmt::format("'{}' is not a VM name", name));
  ensure_dirs();
  RegistryLock lock(dir_);
  std::optional<Entry> current;
  try {
    current = read_entry_file(entry_path(name));
  } catch (const RegistryError&) {
    if (!replace_unreadable) throw;
  }
  std::optional<Entry> next = change(current);
  if (!next) return std::nullopt;
  next->name = name;
  next->updated_at = utc_now_iso8601();
  write_atomically(*next);
  return next;
}

bool Registry::remove(const std::string& name) {
  if (!valid_vm_name(name)) throw RegistryError(fmt::format("'{}' is not a VM name", name));
  const fs::path path = entry_path(name);
  if (!fs::exists(path)) return false;
  RegistryLock lock(dir_);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    throw RegistryError(fmt::format("{}: cannot remove: {}", path.string(), errno_text(errno)));
  }
  return true;
}

void Registry::write_atomically(const Entry& entry) const {
  const fs::path path = entry_path(entry.name);
  const fs::path temp = path.string() + fmt::format(".tmp.{}", ::getpid());
  {
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw RegistryError(fmt::format("{}: cannot create: {}", temp.string(), errno_text(errno)));
    write_all(fd.get(), entry.to_json().dump(2) + "\n", temp);
    // The entry must outlive a power cut that follows: the next boot resumes from it.
    if (::fsync(fd.get()) != 0) throw RegistryError(fmt::format("{}: fsync failed: {}", temp.string(), errno_text(errno)));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    throw RegistryError(fmt::format("{}: cannot rename into place: {}", path.string(), errno_text(err)));
  }
  UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

}  // namespace nvhv::fleet
