// on_reset "reboot": nvhv boots the VM afresh by re-executing itself, so the new run starts from
// a clean process (KVM VM, devices, API socket all new) under the same pid, which systemd and the
// host registry already know.
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "vmm/base/log.hpp"
#include "vmm/machine.hpp"

namespace nvhv {

namespace {

// Reboot times (CLOCK_MONOTONIC ms, which is system-wide and so survives the exec), carried to
// the next image in the environment.
constexpr const char* kRebootEnv = "NVHV_REBOOT_TIMES";

std::vector<long long> recent_reboots(long long now_ms) {
  std::vector<long long> out;
  const char* v = std::getenv(kRebootEnv);
  if (!v) return out;
  std::string s(v);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? s.size() : comma + 1;
    char* end = nullptr;
    long long t = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || *end) continue;  // garbage in the variable counts as nothing
    if (t <= now_ms && now_ms - t < kRebootStormWindowMs) out.push_back(t);
  }
  return out;
}

bool one_shot_option(const std::string& arg) { return arg == "--force-swap-in" || arg.rfind("--swap-in=", 0) == 0; }

}  // namespace

std::vector<std::string> reboot_argv(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  bool cold = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--swap-in") {
      ++i;  // and its value: the swap file was consumed by the first boot
      continue;
    }
    if (one_shot_option(a)) continue;
    cold = cold || a == "--cold";
    out.push_back(a);
  }
  if (!cold) out.push_back("--cold");
  return out;
}

int reboot_by_exec(const std::vector<std::string>& argv) {
  const long long now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  auto times = recent_reboots(now_ms);
  if (times.size() >= kMaxRebootsInWindow) {
    log::error("guest reset: {} reboots within {} s: not rebooting again (reboot storm)", times.size() + 1,
               kRebootStormWindowMs / 1000);
    return 1;
  }
  times.push_back(now_ms);
  std::string value;
  for (auto t : times) value += (value.empty() ? "" : ",") + std::to_string(t);
  ::setenv(kRebootEnv, value.c_str(), 1);

  log::info("guest reset: rebooting (cold boot)");
  const auto args = reboot_argv(argv);
  std::vector<char*> c_args;
  for (const auto& a : args) c_args.push_back(const_cast<char*>(a.c_str()));
  c_args.push_back(nullptr);
  std::fflush(nullptr);
  ::execv("/proc/self/exe", c_args.data());
  log::error("guest reset: cannot re-execute /proc/self/exe to reboot: {}", std::strerror(errno));
  return 1;
}

}  // namespace nvhv
