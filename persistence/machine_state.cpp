#include "persistence/machine_state.hpp"

#include <fmt/core.h>

namespace nvhv::persistence {
namespace {

constexpr uint16_t kVersion = 1;

void read_vcpu(Decoder body, VcpuState& s) {
  RecordReader r(body);
  r.raw(tag::mp_state, "mp_state", s.mp_state);
  r.raw(tag::regs, "regs", s.regs);
  r.raw(tag::sregs, "sregs", s.sregs);
  r.raw_bytes(tag::xsave, "xsave", s.xsave);
  r.raw(tag::xcrs, "xcrs", s.xcrs);
  r.raw(tag::debugregs, "debugregs", s.debugregs);
  r.raw(tag::lapic, "lapic", s.lapic);
  r.raw_array(tag::msrs, "msrs", s.msrs);
  r.raw(tag::events, "events", s.events);
  r.raw_array(tag::cpuid, "cpuid", s.cpuid);
  Decoder tsc = r.one(tag::tsc_khz, "tsc_khz", kVersion);
  s.tsc_khz = tsc.u64("tsc_khz");
  tsc.expect_end();
}

void read_vm(Decoder body, VmState& s) {
  RecordReader r(body);
  r.raw(tag::pic_master, "pic_master", s.pic_master);
  r.raw(tag::pic_slave, "pic_slave", s.pic_slave);
  r.raw(tag::ioapic, "ioapic", s.ioapic);
  r.raw(tag::pit, "pit", s.pit);
  r.raw(tag::clock, "clock", s.clock);
}

void read_device(Decoder body, DeviceState& s) {
  s.id = body.str("id");
  s.version = body.u32("version");
  auto data = body.blob("data");
  s.data.assign(data.begin(), data.end());
  body.expect_end();
}

// A buffer that must hold one record of `tag` (others are skipped as unknown).
Decoder only_record(std::span<const uint8_t> bytes, std::string_view where, uint16_t t, std::string_view name) {
  Decoder top(bytes, std::string(where));
  RecordReader r(top);
  return r.one(t, name, kVersion);
}

}  // namespace

void encode(Encoder& out, const VcpuState& s) {
  const size_t mark = out.begin_record(tag::vcpu, kVersion);
  out.raw_record(tag::mp_state, s.mp_state);
  out.raw_record(tag::regs, s.regs);
  out.raw_record(tag::sregs, s.sregs);
  out.bytes_record(tag::xsave, s.xsave);
  out.raw_record(tag::xcrs, s.xcrs);
  out.raw_record(tag::debugregs, s.debugregs);
  out.raw_record(tag::lapic, s.lapic);
  out.raw_array_record(tag::msrs, std::span<const kvm_msr_entry>(s.msrs));
  out.raw_record(tag::events, s.events);
  out.raw_array_record(tag::cpuid, std::span<const kvm_cpuid_entry2>(s.cpuid));
  const size_t tsc = out.begin_record(tag::tsc_khz, kVersion);
  out.u64(s.tsc_khz);
  out.end_record(tsc);
  out.end_record(mark);
}

void encode(Encoder& out, const VmState& s) {
  const size_t mark = out.begin_record(tag::vm, kVersion);
  out.raw_record(tag::pic_master, s.pic_master);
  out.raw_record(tag::pic_slave, s.pic_slave);
  out.raw_record(tag::ioapic, s.ioapic);
  out.raw_record(tag::pit, s.pit);
  out.raw_record(tag::clock, s.clock);
  out.end_record(mark);
}

void encode(Encoder& out, const DeviceState& s) {
  const size_t mark = out.begin_record(tag::device, kVersion);
  out.str(s.id);
  out.u32(s.version);
  out.blob(s.data);
  out.end_record(mark);
}

void encode(Encoder& out, const MachineState& s) {
  const size_t mark = out.begin_record(tag::machine, kVersion);
  const size_t header = out.begin_record(tag::header, kVersion);
  out.u64(s.saved_at_realtime_ns);
  out.u64(s.host_tsc_khz);
  // The counts let a reader tell a lost vcpu/device record from a machine that had fewer.
  out.u32(static_cast<uint32_t>(s.vcpus.size()));
  out.u32(static_cast<uint32_t>(s.devices.size()));
  out.end_record(header);
  encode(out, s.vm);
  for (const VcpuState& v : s.vcpus) encode(out, v);
  for (const DeviceState& d : s.devices) encode(out, d);
  out.end_record(mark);
}

MachineState decode_machine_state(std::span<const uint8_t> bytes, std::string_view where) {
  Decoder body = only_record(bytes, where, tag::machine, "machine");
  const std::string path = body.where();
  RecordReader r(body);
  MachineState s;
  Decoder header = r.one(tag::header, "header", kVersion);
  s.saved_at_realtime_ns = header.u64("saved_at_realtime_ns");
  s.host_tsc_khz = header.u64("host_tsc_khz");
  const uint32_t vcpu_count = header.u32("vcpu count");
  const uint32_t device_count = header.u32("device count");
  header.expect_end();

  read_vm(r.one(tag::vm, "vm", kVersion), s.vm);
  std::vector<Decoder> vcpus = r.all(tag::vcpu, "vcpu", kVersion);
  if (vcpus.size() != vcpu_count)
    throw DecodeError(fmt::format("{}: header says {} vCPUs but {} vcpu records are present", path, vcpu_count,
                                  vcpus.size()));
  s.vcpus.resize(vcpus.size());
  for (size_t i = 0; i < vcpus.size(); ++i) read_vcpu(std::move(vcpus[i]), s.vcpus[i]);
  std::vector<Decoder> devices = r.all(tag::device, "device", kVersion);
  if (devices.size() != device_count)
    throw DecodeError(fmt::format("{}: header says {} devices but {} device records are present", path, device_count,
                                  devices.size()));
  s.devices.resize(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) read_device(std::move(devices[i]), s.devices[i]);
  return s;
}

VcpuState decode_vcpu_state(std::span<const uint8_t> bytes, std::string_view where) {
  VcpuState s;
  read_vcpu(only_record(bytes, where, tag::vcpu, "vcpu"), s);
  return s;
}

VmState decode_vm_state(std::span<const uint8_t> bytes, std::string_view where) {
  VmState s;
  read_vm(only_record(bytes, where, tag::vm, "vm"), s);
  return s;
}

DeviceState decode_device_state(std::span<const uint8_t> bytes, std::string_view where) {
  DeviceState s;
  read_device(only_record(bytes, where, tag::device, "device"), s);
  return s;
}

}  // namespace nvhv::persistence
