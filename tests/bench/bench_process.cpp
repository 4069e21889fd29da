#include "tests/bench/bench_process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <stdexcept>

#include "tests/support/child_process.hpp"
#include "vmm/base/time_slice.hpp"

namespace nvhv::bench {

Process::Process(std::vector<std::string> argv) : argv_(std::move(argv)) {
  spawned_ = Clock::now();
  // Default signal dispositions: nvhv relies on SIGPWR reaching its own handler.
  const test::PipedChild child = test::spawn_piped(argv_, SpawnOptions{});
  pid_ = child.pid;
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  out_thread_ = std::thread([this, fd = child.out_fd] { reader(fd, out_); });
  err_thread_ = std::thread([this, fd = child.err_fd] { reader(fd, err_); });
}

Process::~Process() {
  if (!exit_) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
}

void Process::reader(int fd, Stream& s) {
  // A reader stamps each line's arrival: it must run when a line is written, not when the VMM's
  // busy vCPU threads finish their slices (up to 3 ms here). It never forks, so the VMM under test
  // keeps the default slice.
  request_time_slice(kNoticePathSlice);
  std::string partial;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const auto at = Clock::now();
    std::lock_guard lock(mu_);
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n') {
        if (!partial.empty() && partial.back() == '\r') partial.pop_back();
        s.lines.push_back({std::move(partial), at, true});
        partial.clear();
      } else {
        partial.push_back(buf[i]);
      }
    }
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  if (!partial.empty()) s.lines.push_back({std::move(partial), Clock::now(), false});
  s.eof = true;
  cv_.notify_all();
}

Clock::time_point Process::signal(int sig) const {
  auto at = Clock::now();
  ::kill(pid_, sig);
  return at;
}

std::optional<Exit> Process::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_) return exit_;
  if (pidfd_ >= 0) {
    pollfd p{pidfd_, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (r < 0 && errno == EINTR);
    if (r == 0) return std::nullopt;
  }
  const auto at = Clock::now();
  int st;
  if (::waitpid(pid_, &st, 0) != pid_) return std::nullopt;
  exit_ = Exit{decode_wait_status(st), at};
  // Every line the child wrote is then in the lists.
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
  return exit_;
}

std::optional<Line> Process::wait_line(Stream& s, const std::regex& re, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    for (; s.scanned < s.lines.size(); ++s.scanned)
      if (std::regex_search(s.lines[s.scanned].text, re)) return s.lines[s.scanned++];
    if (s.eof) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
      for (; s.scanned < s.lines.size(); ++s.scanned)
        if (std::regex_search(s.lines[s.scanned].text, re)) return s.lines[s.scanned++];
      return std::nullopt;
    }
  }
}

std::optional<Line> Process::wait_stdout(const std::regex& re, std::chrono::milliseconds timeout) {
  return wait_line(out_, re, timeout);
}
std::optional<Line> Process::wait_stderr(const std::regex& re, std::chrono::milliseconds timeout) {
  return wait_line(err_, re, timeout);
}

void Process::skip_stdout() {
  std::lock_guard lock(mu_);
  out_.scanned = out_.lines.size();
}

std::vector<Line> Process::stdout_lines() const {
  std::lock_guard lock(mu_);
  return out_.lines;
}
std::vector<Line> Process::stderr_lines() const {
  std::lock_guard lock(mu_);
  return err_.lines;
}

std::string Process::describe() const {
  std::ostringstream os;
  os << "command:";
  for (auto& a : argv_) os << ' ' << a;
  os << "\nstatus: " << (exit_ ? std::to_string(exit_->status) : "running") << "\n--- stdout (last 20 lines) ---\n";
  std::lock_guard lock(mu_);
  for (size_t i = out_.lines.size() > 20 ? out_.lines.size() - 20 : 0; i < out_.lines.size(); ++i) os << out_.lines[i].text << '\n';
  os << "--- stderr ---\n";
  for (auto& l : err_.lines) os << l.text << '\n';
  return os.str();
}

}  // namespace nvhv::bench
