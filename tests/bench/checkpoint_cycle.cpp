#include "tests/bench/checkpoint_cycle.hpp"

#include <regex>

namespace nvhv::bench {

namespace {

std::string last_lines(const std::vector<Line>& lines) {
  std::string out;
  for (size_t i = lines.size() > 5 ? lines.size() - 5 : 0; i < lines.size(); ++i) out += "\n  " + lines[i].text;
  return out;
}

}  // namespace

double micros(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

void check_guest_healthy(const std::vector<Line>& lines, const std::string& what) {
  static const std::regex bad("testos: (error|exception|corrupt)|CORRUPT");
  for (const auto& l : lines)
    if (std::regex_search(l.text, bad)) throw BrokenRun(what + ": guest reported \"" + l.text + "\"");
}

void TickContinuity::saved(const std::vector<Line>& lines) {
  static const std::regex tick(R"(testos: tick (\d+) ok$)");
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string text = i == 0 ? pending_ + lines[i].text : lines[i].text;
    if (!lines[i].complete) {  // only the last line can be
      pending_ = text;
      return;
    }
    pending_.clear();
    std::smatch m;
    if (!std::regex_search(text, m, tick)) continue;  // "testos: boot", "cpus", firmware text
    const long n = std::stol(m[1]);
    if (n != last_ + 1)
      throw BrokenRun(what_ + ": tick " + std::to_string(n) + " followed tick " + std::to_string(last_) + "; lines:" + last_lines(lines));
    last_ = n;
  }
}

void TickContinuity::check_first(const Line& first) const {
  const std::string want = "testos: tick " + std::to_string(last_ + 1) + " ok";
  if (pending_ + first.text != want)
    throw BrokenRun(what_ + ": after tick " + std::to_string(last_) + " (and \"" + pending_ + "\") the restored guest printed \"" +
                    first.text + "\", expected the rest of \"" + want + "\"");
}

}  // namespace nvhv::bench
