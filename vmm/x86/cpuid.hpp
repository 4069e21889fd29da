#pragma once
// Per-vCPU CPUID built from what KVM supports, describing nvhv's topology honestly.
#include "vmm/kvm/kvm_uapi.hpp"

#include <cstdint>
#include <vector>

namespace nvhv::x86 {

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t vcpu_index,
                                         uint32_t vcpu_count);

}  // namespace nvhv::x86
