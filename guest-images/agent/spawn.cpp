#include "guest-images/agent/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "vmm/base/error.hpp"

extern char** environ;

namespace nvhv::agent {

namespace {

// posix_spawn's C structures, released on every path.
struct Attr {
  posix_spawnattr_t a;
  posix_spawn_file_actions_t fa;
  Attr() {
    posix_spawnattr_init(&a);
    posix_spawn_file_actions_init(&fa);
  }
  ~Attr() {
    posix_spawnattr_destroy(&a);
    posix_spawn_file_actions_destroy(&fa);
  }
};

}  // namespace

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw std::invalid_argument("spawn: empty argv");
  Attr at;
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&at.a, flags);
  posix_spawnattr_setsigmask(&at.a, &empty);
  posix_spawnattr_setsigdefault(&at.a, &all);
  posix_spawn_file_actions_addopen(&at.fa, 0, "/dev/null", O_RDONLY, 0);
  // O_APPEND matters beyond log hygiene: CRIU does not record (and later check) the size of a
  // write-only O_APPEND file, so a restored process may find its log grown since the dump.
  const char* out = options.stdout_path.empty() ? "/dev/null" : options.stdout_path.c_str();
  posix_spawn_file_actions_addopen(&at.fa, 1, out, O_WRONLY | O_APPEND | O_CREAT, 0644);
  posix_spawn_file_actions_adddup2(&at.fa, 1, 2);
  posix_spawn_file_actions_addchdir_np(&at.fa, options.cwd.c_str());
  std::vector<char*> args;
  for (auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &at.fa, &at.a, args.data(), environ);
  if (rc != 0) throw SystemError(rc, "start " + argv[0]);
  return pid;
}

int wait_child(pid_t pid) {
  int status;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

int run(const std::vector<std::string>& argv, const std::string& output_path) {
  return wait_child(spawn(argv, SpawnOptions{output_path, false, "/"}));
}

}  // namespace nvhv::agent
