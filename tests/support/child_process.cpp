#include "tests/support/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "vmm/base/error.hpp"
#include "vmm/base/spawn.hpp"

namespace nvhv::test {

PipedChild spawn_piped(const std::vector<std::string>& argv, SpawnOptions spawn, bool merge_stderr) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw std::runtime_error("pipe2 failed");
  }
  spawn.stdout_fd = out_pipe[1];
  spawn.stderr_fd = merge_stderr ? out_pipe[1] : err_pipe[1];
  // setpriv --pdeathsig: the child dies with the process that started it, so a test or bench
  // that crashes or times out never leaves a VMM spinning. It execs the command itself, so pid
  // and exit status are the command's own.
  std::vector<std::string> spawn_argv{"setpriv", "--pdeathsig", "KILL", "--"};
  spawn_argv.insert(spawn_argv.end(), argv.begin(), argv.end());
  PipedChild child{-1, out_pipe[0], err_pipe[0]};
  int rc = 0;
  try {
    child.pid = spawn_process(spawn_argv, spawn);
  } catch (const SystemError& e) {
    rc = e.err();
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  return child;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, Options options) : argv_(std::move(argv)) {
  SpawnOptions spawn;
  spawn.add_env = options.env;
  const PipedChild child = spawn_piped(argv_, spawn, options.merge_stderr);
  pid_ = child.pid;
  out_thread_ = std::thread([this, fd = child.out_fd] { reader(fd, out_); });
  err_thread_ = std::thread([this, fd = child.err_fd] { reader(fd, err_); });
}

ChildProcess::~ChildProcess() {
  if (!status_) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
}

void ChildProcess::reader(int fd, Stream& stream) {
  std::string partial;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n') {
        if (!partial.empty() && partial.back() == '\r') partial.pop_back();
        stream.lines.push_back(std::move(partial));
        partial.clear();
      } else {
        partial.push_back(buf[i]);
      }
    }
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  if (!partial.empty()) {
    stream.lines.push_back(std::move(partial));
    stream.partial_tail = true;
  }
  stream.eof = true;
  cv_.notify_all();
}

void ChildProcess::signal(int sig) const { ::kill(pid_, sig); }

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = decode_wait_status(st);
      // Drain output so callers see every line the child wrote.
      if (out_thread_.joinable()) out_thread_.join();
      if (err_thread_.joinable()) err_thread_.join();
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::optional<std::string> ChildProcess::wait_line(Stream& stream, const std::regex& re,
                                                   std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (; stream.scanned < stream.lines.size(); ++stream.scanned) {
      if (std::regex_search(stream.lines[stream.scanned], re)) return stream.lines[stream.scanned++];
    }
    if (stream.eof) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      for (; stream.scanned < stream.lines.size(); ++stream.scanned)
        if (std::regex_search(stream.lines[stream.scanned], re)) return stream.lines[stream.scanned++];
      return std::nullopt;
    }
  }
}

std::optional<std::string> ChildProcess::wait_stdout(const std::regex& re, std::chrono::milliseconds timeout) {
  return wait_line(out_, re, timeout);
}
std::optional<std::string> ChildProcess::wait_stderr(const std::regex& re, std::chrono::milliseconds timeout) {
  return wait_line(err_, re, timeout);
}

std::vector<std::string> ChildProcess::stdout_lines() const {
  std::lock_guard lock(mu_);
  return out_.lines;
}
bool ChildProcess::stdout_ended_mid_line() const {
  std::lock_guard lock(mu_);
  return out_.partial_tail;
}

std::vector<std::string> ChildProcess::stderr_lines() const {
  std::lock_guard lock(mu_);
  return err_.lines;
}

std::string ChildProcess::describe() const {
  std::ostringstream os;
  os << "command:";
  for (auto& a : argv_) os << ' ' << a;
  os << "\nstatus: " << (status_ ? std::to_string(*status_) : "running") << "\n--- stdout ---\n";
  std::lock_guard lock(mu_);
  for (auto& l : out_.lines) os << l << '\n';
  os << "--- stderr ---\n";
  for (auto& l : err_.lines) os << l << '\n';
  return os.str();
}

namespace {

// Writes what it can of `data`. A command may exit without reading its input (a refusal at
// start-up): the write then fails with EPIPE, and the SIGPIPE it raises must not kill the test.
void write_ignoring_broken_pipe(int fd, const std::string& data) {
  if (data.empty()) return;
  sigset_t pipe_signal, previous;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  // Take the SIGPIPE a failed write left pending, so that unblocking does not deliver it.
  const timespec no_wait{0, 0};
  while (sigtimedwait(&pipe_signal, nullptr, &no_wait) == SIGPIPE) {
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

}  // namespace

RunResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const std::string& stdin_data) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) || pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC))
    throw std::runtime_error("pipe2 failed");
  SpawnOptions spawn;
  spawn.stdin_fd = in_pipe[0];
  spawn.stdout_fd = out_pipe[1];
  spawn.stderr_fd = err_pipe[1];
  pid_t pid = -1;
  int rc = 0;
  try {
    pid = spawn_process(argv, spawn);
  } catch (const SystemError& e) {
    rc = e.err();
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  write_ignoring_broken_pipe(in_pipe[1], stdin_data);
  ::close(in_pipe[1]);
  RunResult result{-1, {}, {}};
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int open_streams = 2;
  while (open_streams > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_streams;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int st;
  ::waitpid(pid, &st, 0);
  result.status = decode_wait_status(st);
  return result;
}

std::string build_dir() { return NVHV_TEST_BUILD_DIR; }
std::string source_dir() { return NVHV_TEST_SOURCE_DIR; }

TempDir::TempDir() {
  char tmpl[] = "/tmp/nvhv-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace nvhv::test
