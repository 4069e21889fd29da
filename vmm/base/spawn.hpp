#pragma once
// Starting another program with posix_spawn, the one way every part of the project does it: no
// fork() of a process full of threads and locks, and every child starts with default signal
// dispositions and an empty mask whatever its parent blocked or caught (nvhv blocks SIGPWR until
// its vCPUs run; a test runner may ignore signals).
#include <sys/types.h>

#include <string>
#include <vector>

namespace nvhv {

struct SpawnOptions {
  int stdin_fd = -1;  // dup2'ed to the child's stdin; -1: /dev/null
  // Child's stdout: this descriptor (dup2'ed; -1 = none) or else this file, opened
  // O_WRONLY|O_CREAT|O_APPEND, or else /dev/null.
  int stdout_fd = -1;
  std::string stdout_path;
  // Child's stderr: this descriptor, or else (-1) the same as stdout.
  int stderr_fd = -1;
  bool new_session = false;  // setsid(): its own session and process group, no terminal
  std::string cwd;           // empty: the parent's
  // The child's environment: the parent's, minus variables named in `unset_env`, plus `add_env`
  // ("NAME=value"; a later entry wins over an inherited one of the same name).
  std::vector<std::string> unset_env;
  std::vector<std::string> add_env;
};

// Starts argv (argv[0] looked up in PATH); throws SystemError naming the program.
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});
// Waits for a child (retrying on EINTR); its exit status, or 128 + the signal that killed it.
int wait_exit_status(pid_t pid);
// The same decoding for a status from waitpid(): exit status, 128 + signal, -1 otherwise.
int decode_wait_status(int status);

}  // namespace nvhv
