#pragma once
// Reads and writes everything KVM exposes about a vCPU and the VM's in-kernel devices, in the
// order KVM needs (see the comments in kvm_state.cpp).
#include <cstdint>
#include <vector>

#include "persistence/machine_state.hpp"
#include "vmm/kvm/kvm.hpp"

namespace nvhv {

// The MSRs a checkpoint carries: those of `candidates` this vCPU can read back, in restore order.
std::vector<uint32_t> probe_readable_msrs(VcpuFd& vcpu, const std::vector<uint32_t>& candidates);

// Fills `out`, reusing its buffers (no allocation on the power-fail path once sized).
void save_vcpu_state(VcpuFd& vcpu, const std::vector<uint32_t>& msrs, size_t xsave_size, persistence::VcpuState& out);
void restore_vcpu_state(VcpuFd& vcpu, const persistence::VcpuState& state);

persistence::VmState save_vm_state(VmFd& vm);
void restore_vm_state(VmFd& vm, const persistence::VmState& state);

}  // namespace nvhv
