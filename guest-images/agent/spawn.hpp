#pragma once
// Starting programs from the (multi-threaded) agent with posix_spawn: no fork of a process full
// of threads and locks, and every child gets default signal dispositions and an empty mask
// whatever the agent set for itself.
#include <sys/types.h>

#include <string>
#include <vector>

namespace nvhv::agent {

struct SpawnOptions {
  std::string stdout_path;    // appended to (O_APPEND); also stderr. Empty: /dev/null
  bool new_session = false;   // setsid(): the child leads its own session and process group
  std::string cwd = "/";
};

// Starts argv (argv[0] looked up in PATH); throws SystemError naming the program.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options);
// Waits for a child; returns its exit status, or 128+signal.
int wait_child(pid_t pid);
// Runs argv to completion with output to `output_path`; returns the exit status.
int run(const std::vector<std::string>& argv, const std::string& output_path);

}  // namespace nvhv::agent
