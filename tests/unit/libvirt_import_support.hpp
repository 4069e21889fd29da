#pragma once
// Helpers for the `nvhv import-libvirt` tests: the fixtures under tests/data/libvirt/ and the
// real nvhv binary.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"

namespace nvhv::test {

inline std::string libvirt_fixture_dir() { return source_dir() + "/tests/data/libvirt"; }
inline std::string nvhv_binary() { return build_dir() + "/bin/nvhv"; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ADD_FAILURE() << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// `nvhv import-libvirt FILE`, run to completion.
inline RunResult run_import(const std::string& file, const std::string& stdin_data = "") {
  return run_command({nvhv_binary(), "import-libvirt", file}, std::chrono::seconds(20), stdin_data);
}

}  // namespace nvhv::test
