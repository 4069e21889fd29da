#include "vmm/base/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "vmm/base/error.hpp"

extern char** environ;

namespace nvhv {
namespace {

// posix_spawn's C structures, released on every path.
struct SpawnAttributes {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnAttributes() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnAttributes() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
  }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
};

bool names_variable(const std::string& entry, const std::string& name) {
  return entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=';
}

std::vector<std::string> child_environment(const SpawnOptions& o) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    bool drop = false;
    for (const auto& name : o.unset_env) drop |= names_variable(entry, name);
    for (const auto& added : o.add_env) drop |= names_variable(entry, added.substr(0, added.find('=')));
    if (!drop) env.push_back(entry);
  }
  env.insert(env.end(), o.add_env.begin(), o.add_env.end());
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& o) {
  if (argv.empty()) throw std::invalid_argument("spawn_process: empty argv");
  SpawnAttributes s;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (o.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&s.attr, flags);
  posix_spawnattr_setsigdefault(&s.attr, &all);
  posix_spawnattr_setsigmask(&s.attr, &none);

  if (o.stdin_fd >= 0)
    posix_spawn_file_actions_adddup2(&s.actions, o.stdin_fd, 0);
  else
    posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
  if (o.stdout_fd >= 0)
    posix_spawn_file_actions_adddup2(&s.actions, o.stdout_fd, 1);
  else
    posix_spawn_file_actions_addopen(&s.actions, 1, o.stdout_path.empty() ? "/dev/null" : o.stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (o.stderr_fd >= 0)
    posix_spawn_file_actions_adddup2(&s.actions, o.stderr_fd, 2);
  else
    posix_spawn_file_actions_adddup2(&s.actions, 1, 2);
  if (!o.cwd.empty()) posix_spawn_file_actions_addchdir_np(&s.actions, o.cwd.c_str());

  std::vector<std::string> args = argv;
  std::vector<std::string> env = child_environment(o);
  auto cargs = c_strings(args);
  auto cenv = c_strings(env);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, cargs[0], &s.actions, &s.attr, cargs.data(), cenv.data());
  if (rc != 0) throw SystemError(rc, "start " + argv[0]);
  return pid;
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int wait_exit_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw_errno("waitpid " + std::to_string(pid));
  return decode_wait_status(status);
}

}  // namespace nvhv
