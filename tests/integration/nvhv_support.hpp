#pragma once
// Helpers for tests that run build/bin/nvhv on testos.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"

namespace nvhv::test {

inline std::string nvhv_bin() { return build_dir() + "/bin/nvhv"; }
inline std::string testos_elf() { return build_dir() + "/guest-images/testos.elf"; }

inline nlohmann::json testos_config(const std::string& name, int vcpus, int mem_mib, const std::string& cmdline) {
  return {{"name", name}, {"vcpus", vcpus}, {"memory", {{"size_mib", mem_mib}}}, {"kernel", testos_elf()}, {"cmdline", cmdline}};
}

inline std::string write_config(const TempDir& dir, const nlohmann::json& cfg, const std::string& name = "guest.json") {
  std::string path = dir.file(name);
  std::ofstream(path) << cfg.dump(2);
  return path;
}

// The serial contract: the tick numbers in order, the count of boot lines, and any CORRUPT.
struct SerialSummary {
  int boots = 0;
  std::vector<long> ticks;
  int corrupt = 0;
};

inline SerialSummary summarize(const std::vector<std::string>& lines) {
  SerialSummary s;
  static const std::regex tick(R"(^testos: tick (\d+) (ok|CORRUPT)$)");
  for (const auto& l : lines) {
    std::smatch m;
    if (l == "testos: boot") s.boots++;
    if (std::regex_match(l, m, tick)) {
      s.ticks.push_back(std::stol(m[1]));
      if (m[2] == "CORRUPT") s.corrupt++;
    }
    if (l.rfind("testos: corrupt", 0) == 0) s.corrupt++;
  }
  return s;
}

// True when ticks run first, first+1, ... without gaps or repeats.
inline bool consecutive(const std::vector<long>& ticks, long first) {
  for (size_t i = 0; i < ticks.size(); ++i)
    if (ticks[i] != first + static_cast<long>(i)) return false;
  return true;
}

inline void skip_without_kvm() {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/kvm is not available";
}

}  // namespace nvhv::test
