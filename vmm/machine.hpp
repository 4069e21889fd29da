#pragma once
// A whole virtual machine: KVM VM, guest memory, devices, vCPUs and the event loop.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "devices/io_bus.hpp"
#include "devices/serial.hpp"
#include "devices/system_control.hpp"
#include "persistence/backing.hpp"
#include "vmm/config.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/vcpu_set.hpp"

namespace nvhv {

struct MachineOptions {
  bool cold_boot = false;  // ignore any checkpoint and boot fresh
};

class Machine {
 public:
  Machine(GuestConfig config, MachineOptions options);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Runs the guest until it powers off, resets, fails or nvhv is told to stop; returns the
  // process exit status (0 clean, 1 failure).
  int run();
  // Ends the run with `status` (first caller wins); safe from any thread, including vCPUs.
  void request_exit(int status, const std::string& reason);

  const GuestConfig& config() const { return config_; }
  boost::asio::io_context& io() { return io_; }
  VcpuSet& vcpus() { return *vcpus_; }
  VmFd& vm() { return *vm_; }
  const GuestMemory& memory() const { return *memory_; }

 private:
  void setup_memory();
  void setup_devices();
  void create_vcpus();
  void load_guest();
  void setup_boot_vcpu(Vcpu& vcpu);
  void start_event_loop();
  void wait_for_signal();
  void on_signal(int signo);
  void on_system_event(SystemEvent event);

  GuestConfig config_;
  MachineOptions options_;
  KvmSystem kvm_;
  std::unique_ptr<VmFd> vm_;
  std::optional<persistence::Backing> backing_;
  std::unique_ptr<GuestMemory> memory_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  UniqueFd serial_fd_;
  std::shared_ptr<Serial> serial_;
  std::unique_ptr<VcpuSet> vcpus_;
  std::vector<uint32_t> supported_msrs_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  uint64_t entry_ = 0;
  uint64_t boot_info_ = 0;

  boost::asio::io_context io_;
  std::optional<boost::asio::signal_set> signals_;
  std::thread event_thread_;

  std::mutex exit_mu_;
  std::condition_variable exit_cv_;
  std::optional<int> exit_status_;
  std::string exit_reason_;
};

}  // namespace nvhv
