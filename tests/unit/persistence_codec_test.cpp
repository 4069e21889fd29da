// The codec primitives: fields, records, bounds checks and the messages DecodeError carries.
#include <gtest/gtest.h>
#include "vmm/kvm/kvm_uapi.hpp"

#include <string>
#include <vector>

#include "persistence/codec.hpp"

namespace nvhv::persistence {
namespace {

template <typename F>
std::string decode_error_of(F&& f) {
  try {
    f();
  } catch (const DecodeError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no DecodeError thrown";
  return {};
}

TEST(Codec, FieldsRoundTrip) {
  std::vector<uint8_t> buf;
  {
    Encoder e(buf);
    e.u8(0xab);
    e.u16(0xbeef);
    e.u32(0xdeadbeef);
    e.u64(0x0123456789abcdefull);
    e.boolean(true);
    e.str("serial0");
    const uint8_t blob[] = {1, 2, 3};
    e.blob(blob);
    kvm_regs regs{};
    regs.rip = 0xfff0;
    e.pod(regs);
    EXPECT_EQ(e.size(), buf.size());
  }
  Decoder d(buf);
  EXPECT_EQ(d.u8("a"), 0xab);
  EXPECT_EQ(d.u16("b"), 0xbeef);
  EXPECT_EQ(d.u32("c"), 0xdeadbeefu);
  EXPECT_EQ(d.u64("d"), 0x0123456789abcdefull);
  EXPECT_TRUE(d.boolean("e"));
  EXPECT_EQ(d.str("f"), "serial0");
  auto blob = d.blob("g");
  ASSERT_EQ(blob.size(), 3u);
  EXPECT_EQ(blob[2], 3);
  EXPECT_EQ(d.pod<kvm_regs>("regs").rip, 0xfff0u);
  EXPECT_TRUE(d.at_end());
  d.expect_end();
}

TEST(Codec, VectorEncoderAppendsAndReusesCapacity) {
  std::vector<uint8_t> buf = {9, 9};
  {
    Encoder e(buf);
    e.u32(7);
    EXPECT_EQ(e.size(), 4u);
  }
  ASSERT_EQ(buf.size(), 6u);
  EXPECT_EQ(buf[0], 9);
  EXPECT_EQ(buf[2], 7);

  buf.clear();
  const uint8_t* data = buf.data();
  const size_t cap = buf.capacity();
  Encoder again(buf);
  again.u32(1);
  again.u16(2);
  EXPECT_EQ(buf.data(), data) << "re-encoding a cleared vector must not reallocate";
  EXPECT_EQ(buf.capacity(), cap);
}

TEST(Codec, FixedEncoderStopsAtCapacity) {
  uint8_t mem[16];
  std::memset(mem, 0x5a, sizeof mem);
  Encoder e(std::span<uint8_t>(mem, 12));
  e.u64(1);
  e.u32(2);
  EXPECT_THROW(e.u8(3), EncodeError);
  EXPECT_EQ(e.size(), 12u);
  for (size_t i = 12; i < sizeof mem; ++i) EXPECT_EQ(mem[i], 0x5a) << "wrote past the buffer at " << i;
}

TEST(Codec, TruncatedFieldNamesItAndWhere) {
  const uint8_t bytes[] = {1, 2, 3};
  Decoder d(bytes, "checkpoint/vcpu[1]");
  const std::string msg = decode_error_of([&] { d.u32("apic base"); });
  EXPECT_NE(msg.find("checkpoint/vcpu[1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("apic base"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(Codec, BlobLongerThanBufferIsRefused) {
  std::vector<uint8_t> buf;
  {
    Encoder e(buf);
    e.u32(1000);
    e.u8(1);
  }
  Decoder d(buf);
  EXPECT_THROW(d.blob("data"), DecodeError);
}

TEST(Codec, BooleanOutOfRange) {
  const uint8_t bytes[] = {2};
  Decoder d(bytes);
  EXPECT_NE(decode_error_of([&] { d.boolean("halted"); }).find("halted"), std::string::npos);
}

TEST(Codec, TrailingBytesAreReported) {
  const uint8_t bytes[] = {1, 2, 3};
  Decoder d(bytes, "device serial0");
  d.u8("x");
  const std::string msg = decode_error_of([&] { d.expect_end(); });
  EXPECT_NE(msg.find("device serial0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 unexpected trailing bytes"), std::string::npos) << msg;
}

std::vector<uint8_t> two_records(uint16_t version_of_second) {
  std::vector<uint8_t> buf;
  Encoder e(buf);
  size_t m = e.begin_record(10, 1);
  e.u32(111);
  e.end_record(m);
  m = e.begin_record(999, 1);  // unknown to the reader below
  e.str("from the future");
  e.end_record(m);
  m = e.begin_record(11, version_of_second);
  e.u64(222);
  e.end_record(m);
  return buf;
}

TEST(Codec, RecordsSkipUnknownTags) {
  auto buf = two_records(1);
  Decoder d(buf, "top");
  RecordReader r(d);
  EXPECT_TRUE(d.at_end());
  Decoder second = r.one(11, "second", 1);
  EXPECT_EQ(second.u64("value"), 222u);
  EXPECT_EQ(r.one(10, "first", 1).u32("value"), 111u);
  EXPECT_TRUE(r.has(999));
}

TEST(Codec, MissingRecordIsNamed) {
  auto buf = two_records(1);
  Decoder d(buf, "top");
  RecordReader r(d);
  const std::string msg = decode_error_of([&] { r.one(12, "lapic", 1); });
  EXPECT_NE(msg.find("top/lapic: missing record"), std::string::npos) << msg;
}

TEST(Codec, NewerRecordVersionIsRefused) {
  auto buf = two_records(3);
  Decoder d(buf, "top");
  RecordReader r(d);
  const std::string msg = decode_error_of([&] { r.one(11, "second", 2); });
  EXPECT_NE(msg.find("top/second: unknown record version 3"), std::string::npos) << msg;
}

TEST(Codec, DuplicateRecordIsRefused) {
  std::vector<uint8_t> buf;
  {
    Encoder e(buf);
    for (int i = 0; i < 2; ++i) {
      size_t m = e.begin_record(10, 1);
      e.end_record(m);
    }
  }
  Decoder d(buf, "top");
  RecordReader r(d);
  EXPECT_NE(decode_error_of([&] { r.one(10, "regs", 1); }).find("duplicate"), std::string::npos);
  EXPECT_EQ(r.all(10, "regs", 1).size(), 2u);
}

TEST(Codec, RecordLengthBeyondBufferIsTruncation) {
  auto buf = two_records(1);
  buf.resize(buf.size() - 1);
  Decoder d(buf, "top");
  const std::string msg = decode_error_of([&] { RecordReader r(d); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tag 11"), std::string::npos) << msg;
}

TEST(Codec, RawRecordSizeIsChecked) {
  std::vector<uint8_t> buf;
  {
    Encoder e(buf);
    kvm_sregs sregs{};
    sregs.cr0 = 0x80000011;
    e.raw_record(34, sregs);
    size_t m = e.begin_record(33, 1);  // a "kvm_regs" from a different ABI: too short
    e.bytes(&sregs, 100);
    e.end_record(m);
  }
  Decoder d(buf, "vcpu[0]");
  RecordReader r(d);
  kvm_sregs sregs{};
  r.raw(34, "sregs", sregs);
  EXPECT_EQ(sregs.cr0, 0x80000011u);
  kvm_regs regs{};
  const std::string msg = decode_error_of([&] { r.raw(33, "regs", regs); });
  EXPECT_NE(msg.find("vcpu[0]/regs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wrong length 100, expected 144"), std::string::npos) << msg;
}

TEST(Codec, RawArrayChecksElementSizeAndCount) {
  std::vector<kvm_msr_entry> msrs(3);
  for (uint32_t i = 0; i < 3; ++i) msrs[i].index = 0x10 + i;
  std::vector<uint8_t> good;
  {
    Encoder e(good);
    e.raw_array_record(39, std::span<const kvm_msr_entry>(msrs));
  }
  {
    Decoder d(good, "vcpu[0]");
    RecordReader r(d);
    std::vector<kvm_msr_entry> out;
    r.raw_array(39, "msrs", out);
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[2].index, 0x12u);
  }
  // Element size field claims a different struct size.
  auto bad_size = good;
  bad_size[kRecordHeaderSize] = 24;
  {
    Decoder d(bad_size, "vcpu[0]");
    RecordReader r(d);
    std::vector<kvm_msr_entry> out;
    const std::string msg = decode_error_of([&] { r.raw_array(39, "msrs", out); });
    EXPECT_NE(msg.find("element size"), std::string::npos) << msg;
  }
  // Count claims more elements than the record holds.
  auto bad_count = good;
  bad_count[kRecordHeaderSize + 4] = 200;
  {
    Decoder d(bad_count, "vcpu[0]");
    RecordReader r(d);
    std::vector<kvm_msr_entry> out;
    const std::string msg = decode_error_of([&] { r.raw_array(39, "msrs", out); });
    EXPECT_NE(msg.find("vcpu[0]/msrs: count"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace nvhv::persistence
