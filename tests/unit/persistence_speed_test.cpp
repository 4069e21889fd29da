// The power-fail path's budget: encoding must take microseconds and commit must not allocate.
// Its own executable because it replaces the global operator new to count allocations.
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

namespace {
std::atomic<size_t> g_allocations{0};
}

// GCC pairs the replaced new with free() and cries mismatch; the pair is malloc/free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

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

TEST(PowerFailBudget, EncodingTwoVcpusTakesMicroseconds) {
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
  // The whole vCPU + device save budget is 100 us; encoding must be a small part of it.
  EXPECT_LT(median, 25.0);
}

TEST(PowerFailBudget, PrepareAndCommitDoNotAllocate) {
  const ImageGeometry geo = ImageGeometry::for_vm(2 << 20, 2);
  Backing b = Backing::anonymous(Image::required_size(geo));
  Image img = Image::open(b, {{"vcpus", 2}}, 2 << 20, 2);
  const MachineState state = test::sample_machine(2, 2);
  img.commit(state);  // warm up

  const size_t before = g_allocations.load();
  img.prepare(state);
  img.persist_ram();
  img.commit();
  EXPECT_EQ(g_allocations.load() - before, 0u) << "heap allocations on the power-fail path";
}

class Device : public Snapshottable {
 public:
  std::string snapshot_id() const override { return "serial0"; }
  uint32_t snapshot_version() const override { return 1; }
  void save(Encoder& out) const override {
    const size_t r = out.begin_record(1, 1);
    out.bytes(fifo, sizeof fifo);
    out.end_record(r);
  }
  void restore(Decoder&, uint32_t) override {}
  uint8_t fifo[64] = {};
};

TEST(PowerFailBudget, SavingDevicesIntoReusedStateDoesNotAllocate) {
  Device dev;
  const Snapshottable* devices[] = {&dev};
  std::vector<DeviceState> saved;
  save_devices(devices, saved);
  const size_t before = g_allocations.load();
  save_devices(devices, saved);
  EXPECT_EQ(g_allocations.load() - before, 0u);
  EXPECT_EQ(saved[0].data.size(), kRecordHeaderSize + 64);
}

// A plain file on whatever TMPDIR is (ext4/tmpfs here): PAGE granularity, so every persist is
// an msync. Prints the numbers the VMM's power-fail budget depends on.
TEST(PowerFailBudget, CommitOnAPlainFile) {
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
