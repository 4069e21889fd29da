#include "vmm/state/kvm_state.hpp"

#include <fmt/core.h>

#include "vmm/base/log.hpp"
#include "vmm/x86/msrs.hpp"

namespace nvhv {

std::vector<uint32_t> probe_readable_msrs(VcpuFd& vcpu, const std::vector<uint32_t>& candidates) {
  // KVM_GET_MSRS stops at the first MSR it cannot read; drop that one and go on.
  std::vector<uint32_t> list = x86::checkpoint_msrs(candidates);
  for (;;) {
    try {
      vcpu.get_msrs(list);
      return list;
    } catch (const std::runtime_error&) {
      // get_msrs names the failing index only in its message: find it by bisection-free scan.
      bool removed = false;
      for (size_t i = 0; i < list.size(); ++i) {
        try {
          vcpu.get_msrs({list[i]});
        } catch (const std::runtime_error&) {
          log::debug("MSR {:#x} is listed by KVM but not readable; not checkpointed", list[i]);
          list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
          removed = true;
          break;
        }
      }
      if (!removed) throw;
    }
  }
}

void save_vcpu_state(VcpuFd& vcpu, const std::vector<uint32_t>& msrs, size_t xsave_size, persistence::VcpuState& out) {
  // MP state first: reading it makes KVM process pending INIT/SIPI events, which change the
  // registers read next.
  out.mp_state = vcpu.get_mp_state();
  // Events before the special and debug registers: without KVM_CAP_EXCEPTION_PAYLOAD, reading
  // them delivers a pending #PF's or #DB's payload into CR2 or DR6, which must be saved too.
  out.events = vcpu.get_vcpu_events();
  out.regs = vcpu.get_regs();
  out.sregs = vcpu.get_sregs();
  vcpu.get_xsave(xsave_size, out.xsave);
  out.xcrs = vcpu.get_xcrs();
  out.debugregs = vcpu.get_debugregs();
  out.lapic = vcpu.get_lapic();
  vcpu.get_msrs(msrs, out.msrs);
  // Neither changes after the vCPU is created (nvhv never sets them later): read once.
  if (!out.tsc_khz) out.tsc_khz = vcpu.get_tsc_khz();
  if (out.cpuid.empty()) out.cpuid = vcpu.get_cpuid();
}

void restore_vcpu_state(VcpuFd& vcpu, const persistence::VcpuState& s) {
  vcpu.set_cpuid(s.cpuid);
  vcpu.set_mp_state(s.mp_state);
  vcpu.set_regs(s.regs);
  vcpu.set_sregs(s.sregs);
  vcpu.set_xsave(s.xsave);
  vcpu.set_xcrs(s.xcrs);
  vcpu.set_debugregs(s.debugregs);
  // The LAPIC before the MSRs: a TSC_DEADLINE write only sticks once the LAPIC timer is in
  // TSC-deadline mode; the MSR list itself has IA32_TSC before TSC_DEADLINE.
  vcpu.set_lapic(s.lapic);
  vcpu.set_msrs(s.msrs);
  vcpu.set_vcpu_events(s.events);
  // Tells a Linux guest's watchdogs that the vCPU was stopped on purpose; testos ignores it.
  try {
    vcpu.kvmclock_ctrl();
  } catch (const std::exception&) {
    // EINVAL when the guest never enabled kvmclock: nothing to tell it.
  }
}

persistence::VmState save_vm_state(VmFd& vm) {
  persistence::VmState s;
  s.pic_master = vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER);
  s.pic_slave = vm.get_irqchip(KVM_IRQCHIP_PIC_SLAVE);
  s.ioapic = vm.get_irqchip(KVM_IRQCHIP_IOAPIC);
  s.pit = vm.get_pit2();
  s.clock = vm.get_clock();
  return s;
}

void restore_vm_state(VmFd& vm, const persistence::VmState& s) {
  vm.set_pit2(s.pit);
  // flags = 0: the guest's kvmclock continues from the value it had at the checkpoint; the
  // outage is invisible to its monotonic time (docs/persistence.md).
  kvm_clock_data clock = s.clock;
  clock.flags = 0;
  clock.realtime = 0;
  clock.host_tsc = 0;
  vm.set_clock(clock);
  vm.set_irqchip(s.pic_master);
  vm.set_irqchip(s.pic_slave);
  vm.set_irqchip(s.ioapic);
}

}  // namespace nvhv
