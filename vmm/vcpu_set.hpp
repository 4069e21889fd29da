#pragma once
// The vCPUs of a machine and the one mechanism that stops them: every request that needs the
// vCPUs out of KVM_RUN with their state consistent (pause, checkpoint, shutdown) goes through
// pause()/stop() here.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/vcpu.hpp"

namespace nvhv {

class VcpuSet {
 public:
  using ExitHandler = std::function<void(Vcpu&, VcpuExit)>;
  using PerVcpuWork = std::function<void(Vcpu&)>;

  explicit VcpuSet(ExitHandler on_exit);
  ~VcpuSet();

  void add(std::unique_ptr<Vcpu> vcpu) { vcpus_.push_back(std::move(vcpu)); }
  size_t size() const { return vcpus_.size(); }
  Vcpu& at(size_t i) { return *vcpus_[i]; }

  void start(PerVcpuWork before_first_run = {});
  // Parks every vCPU outside KVM_RUN (pending I/O completed). `work` runs on each vCPU's own
  // thread while it is parked, in parallel; pause() returns when all are parked and done.
  // Pausing a paused set runs the work again on the parked vCPUs. Returns false if the set
  // is stopping.
  bool pause(const PerVcpuWork& work = {});
  void resume();
  bool paused() const;
  // Ends every vCPU thread (they exit at their next return from KVM_RUN) and joins them.
  void stop_and_join();

  // Called by vCPU threads.
  void on_interrupted(Vcpu& vcpu);
  bool stopping() const;
  // A vCPU that stops for good (power-off, reset, fault) stops the whole set.
  void report_exit(Vcpu& vcpu, VcpuExit why);

 private:
  void wait_briefly_for_acks() const;

  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  ExitHandler on_exit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pause_requested_ = false;
  bool stopping_ = false;
  // Each pause() is an epoch: a vCPU runs that epoch's work once and acknowledges it, whether
  // it was running or already parked by an earlier pause.
  uint64_t epoch_ = 0;
  // Written under mu_; also read without it while pause() spins for the acknowledgements.
  std::atomic<size_t> acked_ = 0;
  std::vector<uint64_t> seen_epoch_;
  bool joined_ = false;
  const PerVcpuWork* work_ = nullptr;
  std::mutex pause_serializer_;  // one pause at a time
};

}  // namespace nvhv
