// Every saved struct survives encode/decode byte for byte, and malformed encodings are refused
// with a DecodeError naming the record, never a crash.
#include <gtest/gtest.h>
#include "vmm/kvm/kvm_uapi.hpp"

#include <random>

#include "persistence/machine_state.hpp"
#include "persistence/snapshottable.hpp"
#include "tests/unit/persistence_test_util.hpp"

namespace nvhv::persistence {
namespace {

using test::expect_same;
using test::sample_machine;

template <typename T>
std::vector<uint8_t> encoded(const T& s) {
  std::vector<uint8_t> buf;
  Encoder e(buf);
  encode(e, s);
  return buf;
}

template <typename T>
class KvmStructRecord : public ::testing::Test {};
using KvmStructs = ::testing::Types<kvm_mp_state, kvm_regs, kvm_sregs, kvm_xcrs, kvm_debugregs, kvm_lapic_state,
                                    kvm_vcpu_events, kvm_irqchip, kvm_pit_state2, kvm_clock_data>;
TYPED_TEST_SUITE(KvmStructRecord, KvmStructs);

TYPED_TEST(KvmStructRecord, RoundTripsVerbatim) {
  std::mt19937_64 rng(sizeof(TypeParam));
  TypeParam in;
  test::fill(in, rng);
  std::vector<uint8_t> buf;
  {
    Encoder e(buf);
    e.raw_record(7, in);
  }
  EXPECT_EQ(buf.size(), kRecordHeaderSize + sizeof(TypeParam));
  Decoder d(buf);
  RecordReader r(d);
  TypeParam out{};
  r.raw(7, "x", out);
  EXPECT_TRUE(test::same_bytes(in, out));
}

template <typename T>
class KvmArrayRecord : public ::testing::Test {};
using KvmArrays = ::testing::Types<kvm_msr_entry, kvm_cpuid_entry2>;
TYPED_TEST_SUITE(KvmArrayRecord, KvmArrays);

TYPED_TEST(KvmArrayRecord, RoundTripsVerbatimIncludingEmpty) {
  std::mt19937_64 rng(3);
  for (size_t n : {size_t{0}, size_t{1}, size_t{77}}) {
    std::vector<TypeParam> in(n);
    for (auto& x : in) test::fill(x, rng);
    std::vector<uint8_t> buf;
    {
      Encoder e(buf);
      e.raw_array_record(7, std::span<const TypeParam>(in));
    }
    Decoder d(buf);
    RecordReader r(d);
    std::vector<TypeParam> out(5);
    r.raw_array(7, "x", out);
    EXPECT_TRUE(test::same_bytes(in, out)) << n << " elements";
  }
}

TEST(MachineStateCodec, VcpuRoundTrip) {
  std::mt19937_64 rng(1);
  const VcpuState in = test::sample_vcpu(rng);
  expect_same(in, decode_vcpu_state(encoded(in)));
}

TEST(MachineStateCodec, VcpuWithEmptyVectorsRoundTrip) {
  std::mt19937_64 rng(2);
  VcpuState in = test::sample_vcpu(rng);
  in.xsave.clear();
  in.msrs.clear();
  in.cpuid.clear();
  expect_same(in, decode_vcpu_state(encoded(in)));
}

TEST(MachineStateCodec, VmRoundTrip) {
  std::mt19937_64 rng(3);
  const VmState in = test::sample_vm(rng);
  expect_same(in, decode_vm_state(encoded(in)));
}

TEST(MachineStateCodec, DeviceRoundTrip) {
  DeviceState in{"virtio-blk0", 7, {0, 1, 2, 255, 254}};
  expect_same(in, decode_device_state(encoded(in)));
  DeviceState empty{"", 1, {}};
  expect_same(empty, decode_device_state(encoded(empty)));
}

TEST(MachineStateCodec, MachineRoundTrip) {
  for (size_t vcpus : {1, 2, 8}) {
    SCOPED_TRACE(vcpus);
    const MachineState in = sample_machine(vcpus, vcpus);
    expect_same(in, decode_machine_state(encoded(in)));
  }
  const MachineState no_devices = sample_machine(1, 9, 0);
  expect_same(no_devices, decode_machine_state(encoded(no_devices)));
}

TEST(MachineStateCodec, EncodingIsDeterministic) {
  EXPECT_EQ(encoded(sample_machine(2, 5)), encoded(sample_machine(2, 5)));
}

template <typename Decode>
void expect_every_truncation_refused(const std::vector<uint8_t>& full, Decode decode) {
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(decode(cut), DecodeError) << "truncated to " << n << " of " << full.size() << " bytes";
  }
}

TEST(MachineStateCodec, EveryTruncationIsRefused) {
  const auto machine = encoded(sample_machine(2, 11));
  expect_every_truncation_refused(machine, [](const auto& b) { decode_machine_state(b); });
  std::mt19937_64 rng(4);
  expect_every_truncation_refused(encoded(test::sample_vcpu(rng)), [](const auto& b) { decode_vcpu_state(b); });
  expect_every_truncation_refused(encoded(test::sample_vm(rng)), [](const auto& b) { decode_vm_state(b); });
  expect_every_truncation_refused(encoded(DeviceState{"serial0", 2, {1, 2, 3, 4}}),
                                  [](const auto& b) { decode_device_state(b); });
}

// Corrupting any single byte must decode or throw DecodeError: no crash, no other exception
// (e.g. bad_alloc from a trusted count).
TEST(MachineStateCodec, EverySingleByteCorruptionIsHandled) {
  const auto full = encoded(sample_machine(1, 12, 2));
  size_t refused = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    auto bad = full;
    bad[i] ^= 0xff;
    try {
      decode_machine_state(bad);
    } catch (const DecodeError&) {
      ++refused;
    }
  }
  // Record headers and counts sit throughout; many flips must be caught.
  EXPECT_GT(refused, 200u);
}

// Builds a 1-vCPU machine whose vcpu record is replaced by `vcpu_body` written by `f`.
template <typename F>
std::vector<uint8_t> machine_with_vcpu(F&& write_vcpu_body, uint32_t claimed_vcpus = 1) {
  const MachineState base = sample_machine(1, 13, 0);
  std::vector<uint8_t> buf;
  Encoder e(buf);
  const size_t m = e.begin_record(tag::machine, 1);
  const size_t h = e.begin_record(tag::header, 1);
  e.u64(1);
  e.u64(2);
  e.u32(claimed_vcpus);
  e.u32(0);
  e.end_record(h);
  encode(e, base.vm);
  const size_t v = e.begin_record(tag::vcpu, 1);
  write_vcpu_body(e, base.vcpus[0]);
  e.end_record(v);
  e.end_record(m);
  return buf;
}

void write_all_but(Encoder& e, const VcpuState& s, uint16_t skip) {
  if (skip != tag::mp_state) e.raw_record(tag::mp_state, s.mp_state);
  if (skip != tag::regs) e.raw_record(tag::regs, s.regs);
  if (skip != tag::sregs) e.raw_record(tag::sregs, s.sregs);
  if (skip != tag::xsave) e.bytes_record(tag::xsave, s.xsave);
  if (skip != tag::xcrs) e.raw_record(tag::xcrs, s.xcrs);
  if (skip != tag::debugregs) e.raw_record(tag::debugregs, s.debugregs);
  if (skip != tag::lapic) e.raw_record(tag::lapic, s.lapic);
  if (skip != tag::msrs) e.raw_array_record(tag::msrs, std::span<const kvm_msr_entry>(s.msrs));
  if (skip != tag::events) e.raw_record(tag::events, s.events);
  if (skip != tag::cpuid) e.raw_array_record(tag::cpuid, std::span<const kvm_cpuid_entry2>(s.cpuid));
  if (skip != tag::tsc_khz) {
    const size_t t = e.begin_record(tag::tsc_khz, 1);
    e.u64(s.tsc_khz);
    e.end_record(t);
  }
}

std::string decode_error(const std::vector<uint8_t>& bytes) {
  try {
    decode_machine_state(bytes);
  } catch (const DecodeError& e) {
    return e.what();
  }
  ADD_FAILURE() << "decoded without error";
  return {};
}

TEST(MachineStateCodec, WrongSizedKvmStructNamesRecordAndSizes) {
  auto bytes = machine_with_vcpu([](Encoder& e, const VcpuState& s) {
    write_all_but(e, s, tag::sregs);
    const size_t r = e.begin_record(tag::sregs, 1);
    e.bytes(&s.sregs, sizeof s.sregs - 8);
    e.end_record(r);
  });
  const std::string msg = decode_error(bytes);
  EXPECT_NE(msg.find("checkpoint/machine/vcpu[0]/sregs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 312"), std::string::npos) << msg;
}

TEST(MachineStateCodec, MissingVcpuRecordIsNamed) {
  auto bytes = machine_with_vcpu([](Encoder& e, const VcpuState& s) { write_all_but(e, s, tag::lapic); });
  EXPECT_NE(decode_error(bytes).find("vcpu[0]/lapic: missing record"), std::string::npos);
}

TEST(MachineStateCodec, MissingVcpuIsDetectedFromHeaderCount) {
  auto bytes = machine_with_vcpu([](Encoder& e, const VcpuState& s) { write_all_but(e, s, 0); }, 2);
  EXPECT_NE(decode_error(bytes).find("header says 2 vCPUs but 1 vcpu records"), std::string::npos);
}

TEST(MachineStateCodec, UnknownRecordsFromNewerWriterAreSkipped) {
  auto bytes = machine_with_vcpu([](Encoder& e, const VcpuState& s) {
    write_all_but(e, s, 0);
    const size_t r = e.begin_record(900, 4);
    e.str("a register a future nvhv saves");
    e.end_record(r);
  });
  const MachineState out = decode_machine_state(bytes);
  expect_same(sample_machine(1, 13, 0).vcpus[0], out.vcpus[0]);
}

TEST(MachineStateCodec, NewerMachineVersionIsRefused) {
  auto bytes = encoded(sample_machine(1, 14));
  bytes[2] = 2;  // version of the outer "machine" record
  EXPECT_NE(decode_error(bytes).find("checkpoint/machine: unknown record version 2"), std::string::npos);
}

// A device that keeps two fields, the second added in version 2.
class FakeDevice : public Snapshottable {
 public:
  explicit FakeDevice(std::string id, uint32_t version = 2) : id_(std::move(id)), version_(version) {}
  std::string snapshot_id() const override { return id_; }
  uint32_t snapshot_version() const override { return version_; }
  void save(Encoder& out) const override {
    out.u32(counter);
    if (version_ >= 2) out.str(label);
  }
  void restore(Decoder& in, uint32_t version) override {
    counter = in.u32("counter");
    label = version >= 2 ? in.str("label") : "default";
  }
  uint32_t counter = 0;
  std::string label;

 private:
  std::string id_;
  uint32_t version_;
};

TEST(Snapshottable, DevicesRoundTripThroughMachineState) {
  FakeDevice a("serial0"), b("rtc0");
  a.counter = 5;
  a.label = "ttyS0";
  b.counter = 9;
  b.label = "cmos";
  MachineState state = sample_machine(1, 15, 0);
  const Snapshottable* devices[] = {&a, &b};
  save_devices(devices, state.devices);

  const MachineState back = decode_machine_state(encoded(state));
  FakeDevice a2("serial0"), b2("rtc0");
  Snapshottable* live[] = {&b2, &a2};  // order does not matter, ids do
  restore_devices(live, back.devices);
  EXPECT_EQ(a2.counter, 5u);
  EXPECT_EQ(a2.label, "ttyS0");
  EXPECT_EQ(b2.counter, 9u);
  EXPECT_EQ(b2.label, "cmos");
}

TEST(Snapshottable, OlderVersionIsRestoredWithItsVersion) {
  FakeDevice old_dev("serial0", 1);
  old_dev.counter = 3;
  std::vector<DeviceState> saved(1);
  save_device(old_dev, saved[0]);
  FakeDevice now("serial0", 2);
  Snapshottable* live[] = {&now};
  restore_devices(live, saved);
  EXPECT_EQ(now.counter, 3u);
  EXPECT_EQ(now.label, "default");
}

TEST(Snapshottable, SaveReusesBuffers) {
  FakeDevice dev("serial0");
  dev.label = std::string(100, 'x');
  DeviceState st;
  save_device(dev, st);
  const uint8_t* data = st.data.data();
  save_device(dev, st);
  EXPECT_EQ(st.data.data(), data);
}

std::string restore_error(std::span<Snapshottable* const> live, const std::vector<DeviceState>& saved) {
  try {
    restore_devices(live, saved);
  } catch (const DecodeError& e) {
    return e.what();
  }
  ADD_FAILURE() << "restore_devices did not throw";
  return {};
}

TEST(Snapshottable, MismatchesAreRefusedByName) {
  FakeDevice dev("serial0", 2);
  std::vector<DeviceState> saved(1);
  save_device(dev, saved[0]);

  FakeDevice other("rtc0");
  Snapshottable* wrong[] = {&other};
  EXPECT_NE(restore_error(wrong, saved).find("device serial0: saved state has it"), std::string::npos);

  FakeDevice a("serial0"), extra("rtc0");
  Snapshottable* more[] = {&a, &extra};
  EXPECT_NE(restore_error(more, saved).find("device rtc0: this VM has it"), std::string::npos);

  FakeDevice older("serial0", 1);
  Snapshottable* old_live[] = {&older};
  EXPECT_NE(restore_error(old_live, saved).find("saved with state version 2, this nvhv reads versions 1..1"),
            std::string::npos);

  saved[0].data.push_back(0);
  FakeDevice c("serial0");
  Snapshottable* live[] = {&c};
  EXPECT_NE(restore_error(live, saved).find("device serial0: 1 unexpected trailing bytes"), std::string::npos);
}

}  // namespace
}  // namespace nvhv::persistence
