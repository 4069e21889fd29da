// Figures of the persistence layer alone: state encoding and commits on a plain file.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "persistence/image.hpp"
#include "persistence/snapshottable.hpp"
#include "tests/unit/persistence_test_util.hpp"

namespace nvhv::persistence {
namespace {

using Clock = std::chrono::steady_clock;

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

template <typename F>
std::pair<double, double> median_and_p99_us(int iterations, F&& f) {
  std::vector<double> t;
  t.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    f();
    t.push_back(micros(Clock::now() - start));
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[t.size() * 99 / 100]};
}

TEST(PersistenceBench, EncodingTwoVcpusTakesMicroseconds) {
  const MachineState state = test::sample_machine(2, 1);
  std::vector<uint8_t> slot(1 << 20);
  size_t size = 0;
  auto encode_once = [&] {
    Encoder e{std::span<uint8_t>(slot)};
    encode(e, state);
    size = e.size();
  };
  for (int i = 0; i < 200; ++i) encode_once();
  const auto [median, p99] = median_and_p99_us(5000, encode_once);
  std::printf("encode 2-vCPU MachineState (%zu bytes): median %.2f us, p99 %.2f us\n", size, median, p99);
  RecordProperty("encode_median_us", std::to_string(median));
  // The whole vCPU + device save budget is 100 us; encoding should be a small part of it.
  std::printf("target: encode median <= 25 us of the 100 us state budget: %s\n", median <= 25.0 ? "met" : "MISSED");
}

// A plain file on whatever TMPDIR is (ext4/tmpfs here): PAGE granularity, so every persist is
// an msync. Prints the numbers the VMM's power-fail budget depends on.
TEST(PersistenceBench, CommitOnAPlainFile) {
  test::TempDir dir;
  const uint64_t ram = 64 << 20;
  const ImageGeometry geo = ImageGeometry::for_vm(ram, 2);
  Backing b = Backing::open(dir.file("vm.img"), Image::required_size(geo), true);
  Image img = Image::open(b, {{"vcpus", 2}}, ram, 2);
  const MachineState state = test::sample_machine(2, 3);

  const auto [commit_median, commit_p99] = median_and_p99_us(200, [&] { img.commit(state); });
  const auto [ram_median, ram_p99] = median_and_p99_us(20, [&] {
    for (uint64_t off = 0; off < (4 << 20); off += 4096) img.ram()[off]++;  // 4 MiB of dirty pages
    img.persist_ram();
  });
  std::printf("%s backing, %s granularity\n", to_string(b.kind()), to_string(b.granularity()));
  std::printf("prepare+commit (2 vCPUs, RAM excluded): median %.1f us, p99 %.1f us\n", commit_median, commit_p99);
  std::printf("persist_ram with 4 MiB dirty of 64 MiB: median %.1f us, p99 %.1f us\n", ram_median, ram_p99);
  RecordProperty("commit_median_us", std::to_string(commit_median));
  EXPECT_EQ(img.generation(), 200u);

  Image again = Image::open(b, {{"vcpus", 2}}, ram, 2);
  ASSERT_EQ(again.status(), ImageStatus::resumable);
  test::expect_same(state, again.load_checkpoint());
}

}  // namespace
}  // namespace nvhv::persistence
