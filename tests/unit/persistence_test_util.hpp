#pragma once
// Shared helpers for the persistence tests: random-filled states, byte-exact comparison,
// scratch directories and file hashes.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "persistence/machine_state.hpp"

namespace nvhv::persistence::test {

template <typename T>
  requires std::is_trivially_copyable_v<T>
void fill(T& v, std::mt19937_64& rng) {
  auto* p = reinterpret_cast<uint8_t*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(rng() | 1);  // never all-zero
}

inline std::vector<uint8_t> random_bytes(size_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Sizes close to a real x86 vCPU: XSAVE2 area, ~40 MSRs, ~60 CPUID leaves.
inline VcpuState sample_vcpu(std::mt19937_64& rng) {
  VcpuState s;
  fill(s.mp_state, rng);
  fill(s.regs, rng);
  fill(s.sregs, rng);
  s.xsave = random_bytes(4096 + 64 * (rng() % 4), rng);
  fill(s.xcrs, rng);
  fill(s.debugregs, rng);
  fill(s.lapic, rng);
  s.msrs.resize(40);
  for (auto& m : s.msrs) fill(m, rng);
  s.cpuid.resize(60);
  for (auto& c : s.cpuid) fill(c, rng);
  fill(s.events, rng);
  s.tsc_khz = rng();
  return s;
}

inline VmState sample_vm(std::mt19937_64& rng) {
  VmState s;
  fill(s.pic_master, rng);
  fill(s.pic_slave, rng);
  fill(s.ioapic, rng);
  fill(s.pit, rng);
  fill(s.clock, rng);
  return s;
}

inline MachineState sample_machine(size_t vcpus, uint64_t seed, size_t devices = 3) {
  std::mt19937_64 rng(seed);
  MachineState s;
  s.saved_at_realtime_ns = 1'700'000'000'000'000'000ull + seed;
  s.host_tsc_khz = 2'400'000 + seed;
  s.vm = sample_vm(rng);
  for (size_t i = 0; i < vcpus; ++i) s.vcpus.push_back(sample_vcpu(rng));
  for (size_t i = 0; i < devices; ++i)
    s.devices.push_back({"device" + std::to_string(i), static_cast<uint32_t>(i + 1), random_bytes(200 + 50 * i, rng)});
  return s;
}

template <typename T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}
template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

inline void expect_same(const VcpuState& a, const VcpuState& b) {
  EXPECT_TRUE(same_bytes(a.mp_state, b.mp_state)) << "mp_state";
  EXPECT_TRUE(same_bytes(a.regs, b.regs)) << "regs";
  EXPECT_TRUE(same_bytes(a.sregs, b.sregs)) << "sregs";
  EXPECT_TRUE(same_bytes(a.xsave, b.xsave)) << "xsave";
  EXPECT_TRUE(same_bytes(a.xcrs, b.xcrs)) << "xcrs";
  EXPECT_TRUE(same_bytes(a.debugregs, b.debugregs)) << "debugregs";
  EXPECT_TRUE(same_bytes(a.lapic, b.lapic)) << "lapic";
  EXPECT_TRUE(same_bytes(a.msrs, b.msrs)) << "msrs";
  EXPECT_TRUE(same_bytes(a.events, b.events)) << "events";
  EXPECT_TRUE(same_bytes(a.cpuid, b.cpuid)) << "cpuid";
  EXPECT_EQ(a.tsc_khz, b.tsc_khz);
}

inline void expect_same(const VmState& a, const VmState& b) {
  EXPECT_TRUE(same_bytes(a.pic_master, b.pic_master)) << "pic_master";
  EXPECT_TRUE(same_bytes(a.pic_slave, b.pic_slave)) << "pic_slave";
  EXPECT_TRUE(same_bytes(a.ioapic, b.ioapic)) << "ioapic";
  EXPECT_TRUE(same_bytes(a.pit, b.pit)) << "pit";
  EXPECT_TRUE(same_bytes(a.clock, b.clock)) << "clock";
}

inline void expect_same(const DeviceState& a, const DeviceState& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.version, b.version);
  EXPECT_TRUE(same_bytes(a.data, b.data)) << "device data of " << a.id;
}

inline void expect_same(const MachineState& a, const MachineState& b) {
  EXPECT_EQ(a.saved_at_realtime_ns, b.saved_at_realtime_ns);
  EXPECT_EQ(a.host_tsc_khz, b.host_tsc_khz);
  expect_same(a.vm, b.vm);
  ASSERT_EQ(a.vcpus.size(), b.vcpus.size());
  for (size_t i = 0; i < a.vcpus.size(); ++i) {
    SCOPED_TRACE("vcpu " + std::to_string(i));
    expect_same(a.vcpus[i], b.vcpus[i]);
  }
  ASSERT_EQ(a.devices.size(), b.devices.size());
  for (size_t i = 0; i < a.devices.size(); ++i) expect_same(a.devices[i], b.devices[i]);
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/nvhv-persist-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline uint64_t file_hash(const std::string& path) {
  auto bytes = read_file(path);
  return XXH3_64bits(bytes.data(), bytes.size()) ^ bytes.size();
}

}  // namespace nvhv::persistence::test
