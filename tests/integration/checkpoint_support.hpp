#pragma once
// Runs of one persistent testos VM across power failures, and the serial transcript they make.
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/nvhv_support.hpp"

namespace nvhv::test {

// The guest's serial output over several nvhv processes. A checkpoint can land between two
// bytes of a line, and the resumed process prints the rest: so a partial last line is joined
// with the next run's first line when that run resumed, and ended when it booted cold.
class Transcript {
 public:
  void add_run(const ChildProcess& run, bool resumed) {
    auto lines = run.stdout_lines();
    // A run that printed nothing (killed while resuming, say) decides nothing about an open
    // line: the run that finally resumes, or cold-boots, does.
    if (lines.empty()) return;
    size_t first = 0;
    if (open_tail_) {
      if (resumed) {
        lines_.back() += lines[0];
        first = 1;
      } else {
        // Output cut by a power loss that no checkpoint covers: the guest never finished the
        // line, and its cold-booted successor starts afresh.
        cut_lines_.push_back(lines_.back());
        lines_.pop_back();
      }
    }
    for (size_t i = first; i < lines.size(); ++i) lines_.push_back(lines[i]);
    open_tail_ = run.stdout_ended_mid_line();
  }
  const std::vector<std::string>& lines() const { return lines_; }

  // Segments of ticks between cold boots; each must count 1, 2, 3, ... without a gap.
  std::string check() const {
    static const std::regex tick(R"(^testos: tick (\d+) (ok|CORRUPT)$)");
    long expected = 0;
    bool in_segment = false;
    // A partial last line is judged once the next run says whether it completes it.
    const size_t complete = open_tail_ ? lines_.size() - 1 : lines_.size();
    for (size_t i = 0; i < complete; ++i) {
      const auto& l = lines_[i];
      if (l.find("CORRUPT") != std::string::npos || l.rfind("testos: corrupt", 0) == 0) return "line " + std::to_string(i) + ": " + l;
      if (l == "testos: boot") {
        expected = 1;
        in_segment = true;
        continue;
      }
      std::smatch m;
      if (std::regex_match(l, m, tick)) {
        if (!in_segment) return "tick before any boot: " + l;
        if (std::stol(m[1]) != expected) return "line " + std::to_string(i) + ": expected tick " + std::to_string(expected) + ", got: " + l;
        ++expected;
      } else if (l.rfind("testos: ", 0) != 0 || l.find("testos:", 1) != std::string::npos) {
        return "malformed line " + std::to_string(i) + ": " + l;
      }
    }
    return "";
  }
  int boots() const {
    int n = 0;
    for (const auto& l : lines_) n += l == "testos: boot";
    return n;
  }
  long last_tick() const {
    static const std::regex tick(R"(^testos: tick (\d+) ok$)");
    for (auto it = lines_.rbegin(); it != lines_.rend(); ++it) {
      std::smatch m;
      if (std::regex_match(*it, m, tick)) return std::stol(m[1]);
    }
    return 0;
  }

 private:
  std::vector<std::string> lines_;
  std::vector<std::string> cut_lines_;
  bool open_tail_ = false;
};

inline bool any_line_matches(const std::vector<std::string>& lines, const std::regex& re) {
  for (const auto& l : lines)
    if (std::regex_search(l, re)) return true;
  return false;
}

}  // namespace nvhv::test
