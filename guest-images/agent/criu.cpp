#include "guest-images/agent/criu.hpp"

#include <sstream>
#include <utility>
#include <vector>

#include "guest-images/agent/files.hpp"
#include "vmm/base/spawn.hpp"

namespace nvhv::agent {

namespace {

constexpr int kLogTailLines = 8;

CriuResult finish(int status, const std::string& log_path, const std::string& out_path) {
  CriuResult r;
  r.status = status;
  r.ok = status == 0;
  std::string out;
  try {
    out = read_file(out_path);
  } catch (const std::exception&) {
  }
  r.stats = parse_stats(out);
  if (!r.ok) {
    r.log_tail = tail_lines(log_path, kLogTailLines);
    // Errors before the log is opened (bad option, missing binary) only reach stdout/stderr.
    if (r.log_tail.empty()) r.log_tail = tail_lines(out_path, kLogTailLines);
    if (r.log_tail.empty()) r.log_tail = "criu exited with status " + std::to_string(status);
  }
  return r;
}

int run_criu(const std::vector<std::string>& argv, const std::string& out_path) {
  // Fresh output each time: the stats and the error tail must be this run's.
  ::unlink(out_path.c_str());
  try {
    return wait_exit_status(spawn_process(argv, {.stdout_path = out_path, .cwd = "/"}));
  } catch (const std::exception& e) {
    write_file_durable(out_path, std::string(e.what()) + "\n");
    return 127;
  }
}

}  // namespace

CriuResult criu_dump(const CriuOptions& o, pid_t pid, const std::string& images_dir,
                     const std::optional<std::string>& prev_images_rel, const std::string& log_path,
                     const std::string& out_path) {
  std::vector<std::string> argv = {o.binary, "dump", "-t", std::to_string(pid), "-D", images_dir,
                                   "-o", log_path, "--leave-running", "--track-mem", "--display-stats",
                                   // A restore follows a guest crash or reboot, after which no TCP peer
                                   // still has the connection: dump connected and half-open sockets as
                                   // closed instead of refusing the whole checkpoint (redis with clients).
                                   "--tcp-close", "--skip-in-flight"};
  if (prev_images_rel) {
    argv.push_back("--prev-images-dir");
    argv.push_back(*prev_images_rel);
  }
  ::unlink(log_path.c_str());
  return finish(run_criu(argv, out_path), log_path, out_path);
}

CriuResult criu_restore(const CriuOptions& o, const std::string& images_dir, const std::string& log_path,
                        const std::string& out_path, pid_t& restored_pid) {
  std::string pidfile = log_path + ".pid";
  ::unlink(pidfile.c_str());
  ::unlink(log_path.c_str());
  // --tcp-close: the dump saved TCP sockets as closed (criu_dump), and CRIU insists on being told.
  std::vector<std::string> argv = {o.binary, "restore", "-d", "-D", images_dir, "-o", log_path,
                                   "--pidfile", pidfile, "--display-stats", "--tcp-close"};
  CriuResult r = finish(run_criu(argv, out_path), log_path, out_path);
  restored_pid = 0;
  if (r.ok) {
    try {
      restored_pid = static_cast<pid_t>(std::stol(read_file(pidfile)));
    } catch (const std::exception&) {
      r.ok = false;
      r.log_tail = "criu restore succeeded but wrote no readable --pidfile " + pidfile;
    }
  }
  return r;
}

nlohmann::json parse_stats(const std::string& text) {
  static const std::pair<const char*, const char*> kKeys[] = {
      {"Freezing time", "freezing_us"},   {"Frozen time", "frozen_us"},
      {"Memory dump time", "memdump_us"}, {"Memory write time", "memwrite_us"},
      {"Memory pages scanned", "pages_scanned"},
      {"Memory pages skipped from parent", "pages_skipped_parent"},
      {"Memory pages written", "pages_written"}, {"Restore time", "restore_us"},
      {"Forking time", "forking_us"},            {"Pages compared", "pages_compared"}};
  nlohmann::json j = nlohmann::json::object();
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && key.front() == ' ') key.erase(key.begin());
    for (auto& [label, name] : kKeys) {
      if (key != label) continue;
      try {
        j[name] = std::stoull(line.substr(colon + 1));
      } catch (const std::exception&) {
      }
    }
  }
  return j;
}

}  // namespace nvhv::agent
