#include "tests/bench/bench_report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace nvhv::bench {

int int_from_env(const char* name, int default_value) {
  const char* v = std::getenv(name);
  if (!v || !*v) return default_value;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 1 || n > 1000000) {
    std::cerr << name << "=" << v << " is not a positive integer; using " << default_value << "\n";
    return default_value;
  }
  return static_cast<int>(n);
}

int runs_from_env(int default_runs) { return int_from_env("NVHV_BENCH_RUNS", default_runs); }

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  auto rank = [&](double p) { return v[static_cast<size_t>(std::max(1.0, std::ceil(p * static_cast<double>(v.size())))) - 1]; };
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p90 = rank(0.90);
  s.p99 = rank(0.99);
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"n", s.n}, {"min", s.min}, {"median", s.median}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
}

void Table::print() const {
  std::vector<size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  };
  widen(header_);
  for (auto& r : rows_) widen(r);
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < width.size(); ++i) {
      std::string cell = i < r.size() ? r[i] : "";
      // First column left-aligned (labels), the rest right-aligned (numbers).
      if (i == 0)
        out += cell + std::string(width[i] - cell.size(), ' ');
      else
        out += "  " + std::string(width[i] - cell.size(), ' ') + cell;
    }
    std::cout << out << "\n";
  };
  line(header_);
  size_t total = 0;
  for (auto w : width) total += w + 2;
  std::cout << std::string(total - 2, '-') << "\n";
  for (auto& r : rows_) line(r);
  std::cout.flush();
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string ratio_text(double numerator, double denominator) {
  if (!(numerator > 0) || !(denominator > 0)) return "n/a";
  return fixed(numerator / denominator, 1) + "x";
}

std::string met_text(bool met) { return met ? "MET" : "MISSED"; }

std::vector<double> load_average() {
  std::ifstream f("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  f >> a >> b >> c;
  return {a, b, c};
}

void print_host_line(const char* when) {
  auto l = load_average();
  std::cout << "# " << when << ": " << sysconf(_SC_NPROCESSORS_ONLN) << " CPUs online, load average " << fixed(l[0]) << " "
            << fixed(l[1]) << " " << fixed(l[2]) << "\n";
}

void print_json(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

}  // namespace nvhv::bench
