#pragma once
// Statistics and output shared by the benchmarks: a small aligned table for people and one JSON
// line (starting with {"bench":) for scripts. Every figure printed comes from this run.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv::bench {

// Repetitions: NVHV_BENCH_RUNS overrides the benchmark's default (at least 1).
int runs_from_env(int default_runs);
// Reads a positive integer from the environment, or returns the default.
int int_from_env(const char* name, int default_value);

struct Stats {
  size_t n = 0;
  double min = 0, median = 0, p90 = 0, p99 = 0, max = 0;
};
// Nearest-rank percentiles: with 15 samples p90 is the 14th and p99 the largest.
Stats stats(std::vector<double> samples);
nlohmann::json to_json(const Stats& s);

// One row per figure; columns are added in the order given.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void print() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fixed(double v, int decimals = 2);
std::string ratio_text(double numerator, double denominator);  // "12.3x" or "n/a"
std::string met_text(bool met);                                  // "MET" / "MISSED"

// The 1/5/15-minute load averages, so results can be read against what else ran.
std::vector<double> load_average();
// A line saying the host, CPU count and load, printed at the start and end of each benchmark.
void print_host_line(const char* when);
void print_json(const nlohmann::json& j);

}  // namespace nvhv::bench
