#pragma once
// MSR values at reset, and the list of MSRs a checkpoint must carry.
#include "vmm/kvm/kvm_uapi.hpp"

#include <cstdint>
#include <vector>

namespace nvhv::x86 {

inline constexpr uint32_t kMsrTsc = 0x10;
inline constexpr uint32_t kMsrTscDeadline = 0x6e0;
inline constexpr uint32_t kMsrMiscEnable = 0x1a0;
inline constexpr uint32_t kMsrMtrrDefType = 0x2ff;
inline constexpr uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;
inline constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00;

// Initial values of the MSRs nvhv sets on a cold boot, filtered to those KVM knows.
std::vector<kvm_msr_entry> boot_msrs(const std::vector<uint32_t>& supported);

// MSRs to save in a checkpoint: KVM's index list, minus the ones that are not per-vCPU state
// or cannot be read back, ordered so that restoring them in sequence is valid (TSC before
// TSC_DEADLINE).
std::vector<uint32_t> checkpoint_msrs(const std::vector<uint32_t>& supported);

}  // namespace nvhv::x86
