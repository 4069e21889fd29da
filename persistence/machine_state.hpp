#pragma once
// Everything a checkpoint holds besides guest RAM, and its encoding with the one codec.
#include "vmm/kvm/kvm_uapi.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/codec.hpp"
#include "persistence/snapshottable.hpp"

namespace nvhv::persistence {

struct VcpuState {
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;  // KVM_GET_XSAVE2 area; its size comes from KVM_CAP_XSAVE2
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  std::vector<kvm_msr_entry> msrs;
  kvm_vcpu_events events{};
  std::vector<kvm_cpuid_entry2> cpuid;
  uint64_t tsc_khz = 0;
};

struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

struct DeviceState {
  std::string id;
  uint32_t version = 0;
  std::vector<uint8_t> data;  // the device's own records, written by Snapshottable::save
};

struct MachineState {
  uint64_t saved_at_realtime_ns = 0;  // CLOCK_REALTIME when the state was saved
  uint64_t host_tsc_khz = 0;          // of the host that saved it
  VmState vm;
  std::vector<VcpuState> vcpus;
  std::vector<DeviceState> devices;
};

// Record tags of the machine state (docs/image-format.md). Unique across levels so that a
// record found in the wrong place cannot be mistaken for another.
namespace tag {
enum : uint16_t {
  machine = 1,
  header = 2,
  vm = 3,
  vcpu = 4,
  device = 5,
  pic_master = 16,
  pic_slave = 17,
  ioapic = 18,
  pit = 19,
  clock = 20,
  mp_state = 32,
  regs = 33,
  sregs = 34,
  xsave = 35,
  xcrs = 36,
  debugregs = 37,
  lapic = 38,
  msrs = 39,
  events = 40,
  cpuid = 41,
  tsc_khz = 42,
};
}  // namespace tag

// Each writes one record.
void encode(Encoder& out, const VcpuState& s);
void encode(Encoder& out, const VmState& s);
void encode(Encoder& out, const DeviceState& s);
void encode(Encoder& out, const MachineState& s);  // the "machine" record a checkpoint holds

// Each reads a buffer holding the record written by the matching encode(); `where` prefixes
// DecodeError messages. Unknown records beside the expected one are skipped.
MachineState decode_machine_state(std::span<const uint8_t> bytes, std::string_view where = "checkpoint");
VcpuState decode_vcpu_state(std::span<const uint8_t> bytes, std::string_view where = "vcpu");
VmState decode_vm_state(std::span<const uint8_t> bytes, std::string_view where = "vm");
DeviceState decode_device_state(std::span<const uint8_t> bytes, std::string_view where = "device");

}  // namespace nvhv::persistence
