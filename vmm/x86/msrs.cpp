#include "vmm/x86/msrs.hpp"

#include <algorithm>

namespace nvhv::x86 {

std::vector<kvm_msr_entry> boot_msrs(const std::vector<uint32_t>& supported) {
  const kvm_msr_entry wanted[] = {
      {0x174, 0, 0},                // IA32_SYSENTER_CS
      {0x175, 0, 0},                // IA32_SYSENTER_ESP
      {0x176, 0, 0},                // IA32_SYSENTER_EIP
      {0xc0000081, 0, 0},           // STAR
      {0xc0000082, 0, 0},           // LSTAR
      {0xc0000083, 0, 0},           // CSTAR
      {0xc0000084, 0, 0},           // SYSCALL_MASK
      {0xc0000102, 0, 0},           // KERNEL_GS_BASE
      {kMsrTsc, 0, 0},
      {kMsrMiscEnable, 0, 1},       // fast strings
      {kMsrMtrrDefType, 0, (1u << 11) | 6},  // MTRRs enabled, write-back by default
  };
  std::vector<kvm_msr_entry> out;
  for (const auto& e : wanted)
    if (std::find(supported.begin(), supported.end(), e.index) != supported.end()) out.push_back(e);
  return out;
}

std::vector<uint32_t> checkpoint_msrs(const std::vector<uint32_t>& supported) {
  std::vector<uint32_t> out;
  bool has_deadline = false;
  for (uint32_t index : supported) {
    if (index == kMsrTscDeadline) {
      has_deadline = true;
      continue;
    }
    out.push_back(index);
  }
  // TSC_DEADLINE is relative to the TSC: it must be restored after IA32_TSC.
  if (has_deadline) out.push_back(kMsrTscDeadline);
  return out;
}

}  // namespace nvhv::x86
