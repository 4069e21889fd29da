#pragma once
// A whole virtual machine: KVM VM, guest memory, devices, vCPUs and the event loop.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <deque>
#include <exception>
#include <filesystem>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <functional>

#include "devices/io_bus.hpp"
#include "devices/pci/kvm_interrupt_sink.hpp"
#include "devices/pci/pci_bus.hpp"
#include "devices/virtio/blk.hpp"
#include "devices/virtio/console.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "devices/rtc_cmos.hpp"
#include "devices/serial.hpp"
#include "devices/system_control.hpp"
#include "persistence/backing.hpp"
#include "persistence/image.hpp"
#include "persistence/machine_state.hpp"
#include "persistence/swap.hpp"
#include "vmm/agent_channel.hpp"
#include "vmm/config.hpp"
#include "vmm/dirty_writeback.hpp"
#include "vmm/swap_dirty_map.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/vcpu_set.hpp"
#include "vmm/x86/mptable.hpp"

namespace nvhv {

struct MachineOptions {
  bool cold_boot = false;  // ignore any checkpoint and boot fresh
  std::chrono::steady_clock::time_point started_at = std::chrono::steady_clock::now();
  std::chrono::milliseconds writeback_interval{100};
  // The swap file this run was swapped in from (run --swap-in): the base of an incremental
  // vm.swap_out to another path.
  std::optional<std::filesystem::path> swapped_in_from;
  // Told of the run's life cycle (the host registry and systemd notifications, vmm/fleet/):
  // ("running", "booted" or "resumed gen=N") on run()'s thread once the vCPUs start, then from
  // any thread each state announce() reports ("checkpointing", "stopping", "swapping-out",
  // "stopped", ...). Those calls come from the power-fail path: they must not block.
  std::function<void(const std::string& state, const std::string& reason)> lifecycle;
};

// What one power-fail checkpoint cost, as printed and reported by vm.stats.
struct CheckpointFigures {
  uint64_t generation = 0;
  uint64_t vcpu_us = 0;     // stop the vCPUs and read their state
  uint64_t devices_us = 0;  // irqchip, PIT, clock and device models
  uint64_t flush_us = 0;    // encode into the slot, make it and the last dirty RAM durable
  uint64_t commit_us = 0;   // publish the generation durably
  uint64_t total_us = 0;
  uint64_t flushed_bytes = 0;  // guest RAM the final flush wrote back
  uint64_t state_bytes = 0;    // encoded machine state
};

// on_reset "reboot" (machine_reboot.cpp). More than kMaxRebootsInWindow reboots within the window
// is a storm: nvhv then exits 1 instead of booting a guest that only ever resets.
inline constexpr size_t kMaxRebootsInWindow = 5;
inline constexpr long long kRebootStormWindowMs = 60'000;
// argv for the new image: --cold added, one-shot options (--swap-in FILE, --force-swap-in) removed.
std::vector<std::string> reboot_argv(const std::vector<std::string>& argv);
// Re-executes nvhv as reboot_argv(argv); returns only on failure (a storm, or execv failed),
// with the exit status.
int reboot_by_exec(const std::vector<std::string>& argv);

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
  // Whether the run ended because the guest reset (or triple-faulted) under "on_reset":
  // "reboot": the caller then boots the VM afresh (main re-executes nvhv with --cold).
  bool reboot_requested() const;
  // The guest agent's channel on the virtio console; null without a console.
  AgentChannel* agent() { return agent_.get(); }

  const GuestConfig& config() const { return config_; }
  boost::asio::io_context& io() { return io_; }
  VcpuSet& vcpus() { return *vcpus_; }
  VmFd& vm() { return *vm_; }
  const GuestMemory& memory() const { return *memory_; }
  bool persistent() const { return image_.has_value(); }
  bool resumed() const { return resumed_generation_ != 0; }

  // The power-fail path (SIGPWR, vm.power_fail): stops the vCPUs, saves and commits the
  // checkpoint, then ends the run with status 0; the vCPUs never run again in this process.
  // Throws when there is nothing persistent to save to or the save failed (the run then ends
  // with status 1 and the previous checkpoint, if any, stays in force).
  CheckpointFigures power_fail_checkpoint(bool exit_after = true);
  // Pause and resume the guest for operators (vm.pause / vm.resume); both go through the one
  // VcpuSet pause mechanism. Throw std::logic_error once a power-fail checkpoint has begun.
  void pause_guest();
  void resume_guest();
  // "running", "paused", "checkpointing" or "stopping".
  std::string state() const;
  double uptime_seconds() const;
  uint64_t checkpoint_generation() const;
  const persistence::Backing* backing() const { return backing_ ? &*backing_ : nullptr; }
  const DirtyWriteback* writeback() const { return writeback_.get(); }
  // Called (from any thread) with the new state and why, for API notifications.
  void set_state_listener(std::function<void(const std::string&, const std::string&)> listener);
  void set_api(std::unique_ptr<class VmApi> api);
  std::optional<CheckpointFigures> last_checkpoint() const;
  // vm.swap_out: takes the power-fail checkpoint, writes the VM to a swap file and releases the
  // persistent image (docs/swap-format.md); the run then ends with status 0. `progress` sees
  // the swap-out's progress. Throws if the checkpoint failed (the guest keeps running) or the
  // swap-out failed (the VM stays in its image with the committed checkpoint). An incremental
  // swap-out takes KVM's dirty log since the swap-in as its dirty map when it was tracked all along
  // (machine_swap.cpp); verify_clean then still compares the chunks it calls clean.
  struct SwapOutReport {
    CheckpointFigures checkpoint;
    uint64_t swap_id = 0;
    bool incremental = false;
    std::string released;
    std::string figures;
    persistence::SwapFigures numbers;
    std::string no_dirty_map;  // incremental without a dirty map: why
  };
  SwapOutReport swap_out(const std::string& path, int level, bool verify_clean,
                         std::function<void(uint64_t done, uint64_t total)> progress);

 private:
  void setup_memory();
  struct SlotRegistration {
    uint32_t slot;
    uint64_t guest_phys;
    uint64_t size;
    uint8_t* host;
    uint32_t flags;
  };
  void setup_pmem_regions(uint32_t first_slot, std::vector<DirtyWriteback::Slot>& tracked, std::vector<SlotRegistration>& registrations);
  void register_memory_slots(const std::vector<SlotRegistration>& slots);
  void setup_devices();
  void setup_virtio();
  std::vector<x86::MpPciInterrupt> pci_interrupts() const;
  void quiesce_devices();
  void resume_devices();
  void sync_disks();
  // A resume takes each vCPU's CPUID and MSRs from the checkpoint: only a cold boot builds them.
  bool will_resume() const;
  void create_vcpus(bool with_boot_cpuid_and_msrs);
  void load_guest();
  void setup_boot_vcpu(Vcpu& vcpu);
  void restore_checkpoint();
  void track_swap_dirty_pages(uint64_t generation);
  void prepare_checkpointing();
  bool restored_state_fits_save_buffer() const;
  void on_power_fail_signal();
  void start_event_loop();
  // Runs `work` on the event loop's thread and waits for it, at most `limit`.
  void run_on_event_loop(std::function<void()> work, std::chrono::milliseconds limit);
  void wait_for_signal();
  void on_signal(int signo);
  void on_system_event(SystemEvent event);
  // A guest reset or triple fault: ends the run, as an exit or a reboot per config_.on_reset.
  void on_guest_reset(int exit_status, const std::string& why);

  GuestConfig config_;
  MachineOptions options_;
  KvmSystem kvm_;
  std::unique_ptr<VmFd> vm_;
  std::optional<persistence::Backing> backing_;
  std::optional<persistence::Image> image_;
  // Declared before writeback_, which holds a pointer to it: destroyed after it.
  std::unique_ptr<SwapDirtyMap> swap_dirty_;
  std::string swap_dirty_note_;  // why there is no swap_dirty_ for a swapped-in VM
  std::unique_ptr<DirtyWriteback> writeback_;
  std::deque<persistence::Backing> pmem_backings_;  // deque: slots keep pointers to them
  std::vector<E820Entry> pmem_e820_;
  uint64_t resumed_generation_ = 0;
  std::vector<uint32_t> checkpoint_msrs_;
  size_t xsave_size_ = 0;
  persistence::MachineState save_buffer_;  // sized once so the power-fail path does not allocate
  std::vector<persistence::Snapshottable*> snapshot_devices_;
  std::unique_ptr<pci::KvmInterruptSink> irq_sink_;
  std::shared_ptr<pci::Bus> pci_;
  std::vector<std::shared_ptr<virtio::VirtioPci>> transports_;
  std::vector<std::shared_ptr<virtio::VirtioBlk>> disks_;
  std::shared_ptr<virtio::VirtioConsole> console_;
  UniqueFd console_log_fd_;
  std::atomic<bool> checkpoint_started_{false};
  std::atomic<bool> paused_by_operator_{false};
  std::chrono::steady_clock::time_point running_since_{};
  std::mutex listener_mu_;
  std::function<void(const std::string&, const std::string&)> state_listener_;
  std::unique_ptr<class VmApi> api_;
  void announce(const std::string& state, const std::string& reason);
  mutable std::mutex figures_mu_;
  std::optional<CheckpointFigures> last_figures_;
  std::unique_ptr<GuestMemory> memory_;
  IoBus pio_{"port I/O"};
  IoBus mmio_{"MMIO"};
  UniqueFd serial_fd_;
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<RtcCmos> rtc_;
  std::unique_ptr<VcpuSet> vcpus_;
  std::vector<uint32_t> supported_msrs_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  uint64_t entry_ = 0;
  uint64_t pvh_start_info_ = 0;  // PVH hvm_start_info, %rbx

  boost::asio::io_context io_;
  std::optional<boost::asio::signal_set> signals_;
  std::thread event_thread_;
  // After io_: destroyed first, while the io_context can still cancel its timers.
  std::unique_ptr<AgentChannel> agent_;

  mutable std::mutex exit_mu_;
  std::condition_variable exit_cv_;
  std::optional<int> exit_status_;
  std::string exit_reason_;
  bool reboot_ = false;
};

}  // namespace nvhv
