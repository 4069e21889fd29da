#include "vmm/x86/cpuid.hpp"

#include <bit>

namespace nvhv::x86 {
namespace {
constexpr uint32_t kHypervisorBit = 1u << 31;  // leaf 1 ECX
constexpr uint32_t kHttBit = 1u << 28;         // leaf 1 EDX
}  // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t vcpu_index,
                                         uint32_t vcpu_count) {
  std::vector<kvm_cpuid_entry2> out = supported;
  uint32_t core_bits = static_cast<uint32_t>(std::bit_width(std::bit_ceil(vcpu_count)) - 1);
  for (auto& e : out) {
    switch (e.function) {
      case 0x1:
        // APIC ID, logical processor count and the hypervisor bit; the guest's topology is one
        // package of vcpu_count single-threaded cores.
        e.ebx = (e.ebx & 0x0000ffff) | (vcpu_index << 24) | (std::bit_ceil(vcpu_count) << 16);
        e.ecx |= kHypervisorBit;
        if (vcpu_count > 1)
          e.edx |= kHttBit;
        else
          e.edx &= ~kHttBit;
        break;
      case 0x4:
        // Cores per package minus one in EAX[31:26]; keep the cache description itself.
        e.eax = (e.eax & 0x03ffffff) | ((std::bit_ceil(vcpu_count) - 1) << 26);
        break;
      case 0xa:
        // No virtual PMU: the nested hosts nvhv is tested on do not provide one, and a
        // checkpointed PMU state would not be restorable on another host.
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
      case 0xb:
      case 0x1f:
        e.edx = vcpu_index;  // x2APIC ID
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | 0;
        } else if (e.index == 1) {
          e.eax = core_bits;
          e.ebx = vcpu_count;
          e.ecx = (2u << 8) | 1;
        } else {
          e.eax = e.ebx = 0;
          e.ecx = e.index;
        }
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace nvhv::x86
