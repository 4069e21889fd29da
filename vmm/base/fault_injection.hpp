#pragma once
// Test-only crash points: when NVHV_FAULT_INJECT names a point, the process kills itself with
// SIGKILL there, as a power cut would stop it. Tests use it to reach every step of the
// checkpoint, resume and swap paths deterministically; production never sets the variable.
#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace nvhv {

inline void fault_point(const char* name) {
  static const char* wanted = std::getenv("NVHV_FAULT_INJECT");
  if (wanted && std::strcmp(wanted, name) == 0) ::raise(SIGKILL);
}

}  // namespace nvhv
