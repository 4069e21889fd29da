#include "vmm/vcpu.hpp"

#include <fmt/core.h>
#include <cpuid.h>
#include <signal.h>

#include <chrono>
#include <cstring>

#include "vmm/base/log.hpp"
#include "vmm/vcpu_set.hpp"

namespace nvhv {
namespace {

const int kKickSignal = SIGRTMIN + 1;

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};  // its only job is to interrupt KVM_RUN (no SA_RESTART)
    sigemptyset(&sa.sa_mask);
    sigaction(kKickSignal, &sa, nullptr);
  });
}

// AMD's SVM leaves the VMCB undefined after a shutdown intercept, so KVM INITs the vCPU before it
// reports KVM_EXIT_SHUTDOWN: what we can read then is the reset state, not where the guest failed.
bool shutdown_registers_are_reset_state() {
  unsigned max_leaf = 0, vendor[3] = {};
  if (!__get_cpuid(0, &max_leaf, &vendor[0], &vendor[2], &vendor[1])) return false;
  return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
}

}  // namespace

void Vcpu::start(VcpuSet& set, std::function<void(Vcpu&)> before_first_run) {
  install_kick_handler();
  thread_ = std::thread([this, &set, fn = std::move(before_first_run)]() mutable { thread_main(set, std::move(fn)); });
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
  started_ = false;
}

void Vcpu::kick() {
  __atomic_store_n(&fd_.run_area()->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (started_.load()) pthread_kill(handle_.load(), kKickSignal);
}

void Vcpu::thread_main(VcpuSet& set, std::function<void(Vcpu&)> before_first_run) {
  handle_.store(pthread_self());
  started_.store(true);
  pthread_setname_np(pthread_self(), fmt::format("vcpu{}", index()).c_str());
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, kKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);
  try {
    if (before_first_run) before_first_run(*this);
    kvm_run* run = fd_.run_area();
    while (!set.stopping()) {
      auto t0 = std::chrono::steady_clock::now();
      bool exited = fd_.run();
      stats_.run_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
      if (!exited) {
        // Interrupted: KVM completed any pending I/O before returning, so state is consistent.
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        ++stats_.interrupted;
        set.on_interrupted(*this);
        continue;
      }
      VcpuExit why = handle_exit();
      if (why != VcpuExit::none) {
        set.report_exit(*this, why);
        break;
      }
    }
  } catch (const std::exception& e) {
    log::error("vcpu{}: {}", index(), e.what());
    set.report_exit(*this, VcpuExit::vmm_error);
  }
}

VcpuExit Vcpu::handle_exit() {
  kvm_run* run = fd_.run_area();
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      ++stats_.io_exits;
      const uint64_t bytes = uint64_t{run->io.size} * run->io.count;
      if (run->io.data_offset > fd_.run_area_size() || bytes > fd_.run_area_size() - run->io.data_offset) {
        log::error("vcpu{}: KVM_EXIT_IO data outside the run area", index());
        return VcpuExit::vmm_error;
      }
      uint8_t* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; ++i, data += run->io.size) {
        std::span<uint8_t> chunk(data, run->io.size);
        bool claimed = run->io.direction == KVM_EXIT_IO_OUT ? pio_.write(run->io.port, chunk) : pio_.read(run->io.port, chunk);
        if (!claimed) log::debug("vcpu{}: unclaimed port {} {:#x} size {}", index(), run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read", run->io.port, run->io.size);
      }
      return VcpuExit::none;
    }
    case KVM_EXIT_MMIO: {
      ++stats_.mmio_exits;
      uint32_t len = std::min<uint32_t>(run->mmio.len, sizeof run->mmio.data);
      std::span<uint8_t> data(run->mmio.data, len);
      bool claimed = run->mmio.is_write ? mmio_.write(run->mmio.phys_addr, data) : mmio_.read(run->mmio.phys_addr, data);
      if (!claimed) log::debug("vcpu{}: unclaimed MMIO {} {:#x} len {}", index(), run->mmio.is_write ? "write" : "read", run->mmio.phys_addr, len);
      return VcpuExit::none;
    }
    case KVM_EXIT_HLT:
      ++stats_.other_exits;
      return VcpuExit::none;
    case KVM_EXIT_SHUTDOWN:
      log::error("vcpu{}: triple fault (KVM_EXIT_SHUTDOWN)\n{}{}", index(), describe_registers(),
                 shutdown_registers_are_reset_state()
                     ? "\n  (AMD host: KVM resets the vCPU before reporting a shutdown, so these are its reset-state registers, not where the guest faulted)"
                     : "");
      return VcpuExit::triple_fault;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN: return VcpuExit::power_off;
        case KVM_SYSTEM_EVENT_RESET: return VcpuExit::reset;
        default:
          log::error("vcpu{}: system event {}\n{}", index(), run->system_event.type, describe_registers());
          return VcpuExit::internal_error;
      }
    case KVM_EXIT_FAIL_ENTRY:
      log::error("vcpu{}: KVM_EXIT_FAIL_ENTRY reason {:#x}\n{}", index(), run->fail_entry.hardware_entry_failure_reason, describe_registers());
      return VcpuExit::failed_entry;
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string data;
      for (uint32_t i = 0; i < std::min<uint32_t>(run->internal.ndata, 16); ++i) data += fmt::format(" {:#x}", run->internal.data[i]);
      log::error("vcpu{}: KVM internal error, suberror {} data:{}\n{}", index(), run->internal.suberror, data, describe_registers());
      return VcpuExit::internal_error;
    }
    default:
      ++stats_.other_exits;
      log::error("vcpu{}: unhandled exit reason {}\n{}", index(), run->exit_reason, describe_registers());
      return VcpuExit::internal_error;
  }
}

std::string Vcpu::describe_registers() {
  try {
    kvm_regs r = fd_.get_regs();
    kvm_sregs s = fd_.get_sregs();
    return fmt::format(
        "  rip={:016x} rsp={:016x} rflags={:016x}\n"
        "  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}\n"
        "  rsi={:016x} rdi={:016x} rbp={:016x}\n"
        "  r8={:016x} r9={:016x} r10={:016x} r11={:016x}\n"
        "  r12={:016x} r13={:016x} r14={:016x} r15={:016x}\n"
        "  cs={:04x} (dpl {} l {}) ss={:04x} cr0={:x} cr2={:x} cr3={:x} cr4={:x} efer={:x}",
        r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
        r.r14, r.r15, s.cs.selector, s.cs.dpl, s.cs.l, s.ss.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
  } catch (const std::exception& e) {
    return std::string("  (registers unavailable: ") + e.what() + ")";
  }
}

}  // namespace nvhv
