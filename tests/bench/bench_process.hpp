#pragma once
// A child process for benchmarks: every output line carries the time it was read, so latencies
// are measured from the spawn to the moment a line reached us, not to when a test looked at it.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace nvhv::bench {

using Clock = std::chrono::steady_clock;

struct Line {
  std::string text;
  Clock::time_point at;  // when the read that completed this line returned
  bool complete = true;  // false for text left without a newline when the stream ended
};

struct Exit {
  int status;  // exit status, or 128+signal
  Clock::time_point at;
};

class Process {
 public:
  // Starts argv[0] (searched in PATH) with stdin from /dev/null. spawned() is taken just before
  // posix_spawn, so it includes fork/exec and the dynamic loader.
  explicit Process(std::vector<std::string> argv);
  ~Process();  // SIGKILLs and reaps a child still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  Clock::time_point spawned() const { return spawned_; }
  // Sends a signal and returns the time just before kill(2).
  Clock::time_point signal(int sig) const;
  // Waits for the exit through a pidfd, so the time is when the kernel reported it.
  std::optional<Exit> wait_exit(std::chrono::milliseconds timeout);

  // The next line (after those already returned by this stream's waits) matching re.
  std::optional<Line> wait_stdout(const std::regex& re, std::chrono::milliseconds timeout);
  std::optional<Line> wait_stderr(const std::regex& re, std::chrono::milliseconds timeout);
  // Lines not yet returned by a wait on that stream are skipped from here on.
  void skip_stdout();

  std::vector<Line> stdout_lines() const;
  std::vector<Line> stderr_lines() const;
  std::string describe() const;  // command, status and output, for error messages

 private:
  struct Stream {
    std::vector<Line> lines;
    size_t scanned = 0;
    bool eof = false;
  };
  void reader(int fd, Stream& s);
  std::optional<Line> wait_line(Stream& s, const std::regex& re, std::chrono::milliseconds timeout);

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  Clock::time_point spawned_;
  std::optional<Exit> exit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Stream out_, err_;
  std::thread out_thread_, err_thread_;
};

}  // namespace nvhv::bench
