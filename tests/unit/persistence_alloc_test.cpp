// The power-fail path's budget: encoding must take microseconds and commit must not allocate.
// Its own executable because it replaces the global operator new to count allocations.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
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


TEST(PowerFailPath, PrepareAndCommitDoNotAllocate) {
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

TEST(PowerFailPath, SavingDevicesIntoReusedStateDoesNotAllocate) {
  Device dev;
  const Snapshottable* devices[] = {&dev};
  std::vector<DeviceState> saved;
  save_devices(devices, saved);
  const size_t before = g_allocations.load();
  save_devices(devices, saved);
  EXPECT_EQ(g_allocations.load() - before, 0u);
  EXPECT_EQ(saved[0].data.size(), kRecordHeaderSize + 64);
}

}  // namespace
}  // namespace nvhv::persistence
