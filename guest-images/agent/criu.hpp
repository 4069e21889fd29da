#pragma once
// Running Debian's criu (3.17) for dumps and restores, and reading what it reports.
#include <sys/types.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace nvhv::agent {

struct CriuOptions {
  std::string binary = "criu";
};

struct CriuResult {
  bool ok = false;
  int status = 0;
  std::string log_tail;  // CRIU's own reason when it failed: the last lines of its log
  nlohmann::json stats = nlohmann::json::object();
};

// Dumps the process tree rooted at `pid` into `images_dir`, leaving it running, with memory
// tracking on so the next dump can be incremental. `prev_images_rel` (relative to images_dir,
// e.g. "../3"): the previous generation, whose unchanged pages are referenced, not written.
// CRIU's log goes to `log_path`, its --display-stats output to `out_path`.
CriuResult criu_dump(const CriuOptions& o, pid_t pid, const std::string& images_dir,
                     const std::optional<std::string>& prev_images_rel, const std::string& log_path,
                     const std::string& out_path);

// Restores detached (`criu restore -d`); on success, `restored_pid` is the tree's root.
CriuResult criu_restore(const CriuOptions& o, const std::string& images_dir, const std::string& log_path,
                        const std::string& out_path, pid_t& restored_pid);

// The figures of `criu --display-stats` output ("Frozen time: 683355 us",
// "Memory pages written: 41 (0x29)", ...)
// as {"frozen_us": .., "memdump_us": .., "memwrite_us": .., "pages_scanned": ..,
// "pages_skipped_parent": .., "pages_written": ..}; lines it does not know are skipped.
nlohmann::json parse_stats(const std::string& text);

}  // namespace nvhv::agent
