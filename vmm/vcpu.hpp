#pragma once
// One vCPU and the thread that runs it.
#include <pthread.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "devices/io_bus.hpp"
#include "vmm/kvm/kvm.hpp"

namespace nvhv {

class VcpuSet;

enum class VcpuExit { none, power_off, reset, triple_fault, internal_error, failed_entry, vmm_error };

struct VcpuStats {
  std::atomic<uint64_t> io_exits{0};
  std::atomic<uint64_t> mmio_exits{0};
  std::atomic<uint64_t> interrupted{0};
  std::atomic<uint64_t> other_exits{0};
  std::atomic<uint64_t> run_ns{0};  // wall time spent inside KVM_RUN
};

class Vcpu {
 public:
  Vcpu(VcpuFd fd, const IoBus& pio, const IoBus& mmio) : fd_(std::move(fd)), pio_(pio), mmio_(mmio) {}
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  VcpuFd& fd() { return fd_; }
  uint32_t index() const { return fd_.index(); }
  const VcpuStats& stats() const { return stats_; }

  // Runs the vCPU loop on a new thread; `before_first_run` runs on that thread first (restoring
  // state there keeps each vCPU's ioctls on its own thread).
  void start(VcpuSet& set, std::function<void(Vcpu&)> before_first_run);
  void join();
  // Makes a running or about-to-run KVM_RUN return to user space soon (any thread).
  void kick();
  // Registers and segment state, for logs when the guest dies.
  std::string describe_registers();

 private:
  void thread_main(VcpuSet& set, std::function<void(Vcpu&)> before_first_run);
  VcpuExit handle_exit();

  VcpuFd fd_;
  const IoBus& pio_;
  const IoBus& mmio_;
  std::thread thread_;
  std::atomic<pthread_t> handle_{};
  std::atomic<bool> started_{false};
  VcpuStats stats_;
};

}  // namespace nvhv
