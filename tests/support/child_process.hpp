#pragma once
// Spawns a command for integration tests and lets a test wait for lines of its output.
#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <condition_variable>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/base/spawn.hpp"

namespace nvhv::test {

// A command started under `setpriv --pdeathsig KILL`, with its stdout and stderr on pipes whose
// read ends are the caller's to read and close (stderr goes to the stdout pipe when merged; the
// stderr pipe then only reports end of file). Throws when it cannot be started.
struct PipedChild {
  pid_t pid;
  int out_fd;
  int err_fd;
};
PipedChild spawn_piped(const std::vector<std::string>& argv, SpawnOptions spawn, bool merge_stderr = false);

class ChildProcess {
 public:
  struct Options {
    std::vector<std::string> env;  // extra NAME=VALUE entries
    bool merge_stderr = false;     // stderr lines go to the stdout list too
  };
  explicit ChildProcess(std::vector<std::string> argv) : ChildProcess(std::move(argv), Options{}) {}
  ChildProcess(std::vector<std::string> argv, Options options);
  ~ChildProcess();  // kills (SIGKILL) and reaps a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for exit; returns the exit status (128+signal when killed), or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);

  // Waits until a stdout (or stderr) line matches; returns it, or nullopt on timeout or exit.
  std::optional<std::string> wait_stdout(const std::regex& re, std::chrono::milliseconds timeout);
  std::optional<std::string> wait_stderr(const std::regex& re, std::chrono::milliseconds timeout);

  std::vector<std::string> stdout_lines() const;
  // True when the child's stdout ended without a final newline (its last line is partial).
  bool stdout_ended_mid_line() const;
  std::vector<std::string> stderr_lines() const;
  std::string describe() const;  // command, status and all output, for failure messages

 private:
  struct Stream {
    std::vector<std::string> lines;
    size_t scanned = 0;
    bool eof = false;
    bool partial_tail = false;
  };
  void reader(int fd, Stream& stream);
  std::optional<std::string> wait_line(Stream& stream, const std::regex& re, std::chrono::milliseconds timeout);

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  std::optional<int> status_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Stream out_, err_;
  std::thread out_thread_, err_thread_;
};

// Runs a command to completion and returns {status, stdout, stderr}.
struct RunResult {
  int status;
  std::string out;
  std::string err;
};
RunResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const std::string& stdin_data = "");

// Paths of the build tree, set by CMake for test binaries.
std::string build_dir();
std::string source_dir();
// A fresh directory under /tmp removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace nvhv::test
