#include "vmm/machine.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <future>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/base/time_slice.hpp"
#include "vmm/loader/elf_loader.hpp"
#include "vmm/loader/linux_loader.hpp"
#include "vmm/loader/pvh.hpp"
#include "vmm/x86/boot_state.hpp"
#include "vmm/x86/cpuid.hpp"
#include "vmm/x86/layout.hpp"
#include "vmm/x86/mptable.hpp"
#include "vmm/x86/msrs.hpp"
#include "vmm/vm_api.hpp"

namespace nvhv {

namespace {
constexpr uint32_t kSerialIrq = 4;
constexpr uint64_t kCom1 = 0x3f8;

// For the calling thread; threads inherit it when they are created.
void set_power_fail_signal_blocked(bool blocked) {
  sigset_t power_fail;
  sigemptyset(&power_fail);
  sigaddset(&power_fail, SIGPWR);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &power_fail, nullptr);
}
}  // namespace

Machine::Machine(GuestConfig config, MachineOptions options) : config_(std::move(config)), options_(options) {
  vm_ = std::make_unique<VmFd>(kvm_);
  vm_->set_identity_map_address(layout::kKvmIdentityMap);
  vm_->set_tss_address(layout::kKvmTss);
  // Memory first: KVM_SET_USER_MEMORY_REGION waits for an SRCU grace period, and measured on a
  // nested host that wait is 0.2-0.4 ms on a VM without an irqchip but 5-10 ms once
  // KVM_CREATE_IRQCHIP has run; every resume pays it before the guest can run.
  setup_memory();
  // With this capability KVM keeps a pending #PF's or #DB's payload (the address for CR2, the
  // bits for DR6) in the vCPU events. Without it, reading the events writes the payload into
  // CR2 or DR6 there and then: a checkpoint that had read the special registers first would
  // carry a CR2 older than the pending fault, and the resumed guest would handle its page fault
  // at the wrong address. (save_vcpu_state also reads the events first, for KVMs without it.)
  if (vm_->check_extension(KVM_CAP_EXCEPTION_PAYLOAD) > 0) vm_->enable_cap(KVM_CAP_EXCEPTION_PAYLOAD, 1);
  vm_->create_irqchip();
  vm_->create_pit2();
  supported_msrs_ = kvm_.msr_index_list();
  setup_devices();
  // KVM_GET_SUPPORTED_CPUID and KVM_SET_CPUID2 are among the dearest ioctls on a nested host
  // (0.1-0.2 ms each, measured): a resume sets the checkpoint's CPUID and MSRs anyway.
  create_vcpus(!will_resume());
  load_guest();
}

bool Machine::will_resume() const {
  return image_ && image_->status() == persistence::ImageStatus::resumable && !options_.cold_boot;
}

void Machine::register_memory_slots(const std::vector<SlotRegistration>& slots) {
  for (const auto& r : slots) vm_->set_user_memory_region(r.slot, r.guest_phys, r.size, r.host, r.flags);
}

Machine::~Machine() {
  if (vcpus_) vcpus_->stop_and_join();
  io_.stop();
  if (event_thread_.joinable()) event_thread_.join();
  set_state_listener({});
  api_.reset();  // the API server must go before the io_context it runs on
  if (serial_) serial_->flush_output();
}

void Machine::setup_memory() {
  const uint64_t bytes = config_.memory_bytes();
  uint8_t* ram = nullptr;
  if (config_.memory.backing) {
    auto geometry = persistence::ImageGeometry::for_vm(bytes, config_.vcpus);
    backing_ = persistence::Backing::open(config_.memory.backing->string(), persistence::Image::required_size(geometry),
                                          persistence::Backing::Options{true, false});
    image_ = persistence::Image::open(*backing_, config_.identity(), bytes, config_.vcpus);
    ram = image_->ram();
  } else {
    backing_ = persistence::Backing::anonymous(bytes);
    ram = backing_->data();
  }
  memory_ = std::make_unique<GuestMemory>(ram, bytes);
  // RAM that only reaches the medium through explicit write-back is dirty-logged, so the
  // power-fail flush covers only what the guest wrote since the last background pass.
  const bool track_dirty = image_ && backing_->granularity() != persistence::Granularity::byte;
  std::vector<DirtyWriteback::Slot> slots;
  std::vector<SlotRegistration> registrations;
  uint32_t slot = 0;
  for (const auto& r : memory_->regions()) {
    registrations.push_back({slot, r.guest_phys, r.size, r.host, static_cast<uint32_t>(track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0)});
    if (track_dirty) slots.push_back({slot, r.host, r.size, &*backing_, r.guest_phys});
    ++slot;
  }
  setup_pmem_regions(slot, slots, registrations);
  if (!slots.empty()) writeback_ = std::make_unique<DirtyWriteback>(*vm_, std::move(slots), options_.writeback_interval);
  register_memory_slots(registrations);
}

void Machine::setup_pmem_regions(uint32_t first_slot, std::vector<DirtyWriteback::Slot>& tracked,
                                 std::vector<SlotRegistration>& registrations) {
  // Above RAM and the PCI hole, 1 GiB aligned so each region can become its own
  // memory section in the guest.
  uint64_t gpa = layout::kFourGiB;
  for (const auto& r : memory_->regions()) gpa = std::max(gpa, r.guest_phys + r.size);
  gpa = (gpa + layout::kGiB - 1) & ~(layout::kGiB - 1);
  uint32_t slot = first_slot;
  for (const auto& region : config_.pmem) {
    const uint64_t size = region.size_mib << 20;
    auto& b = pmem_backings_.emplace_back(persistence::Backing::open(region.path.string(), size, persistence::Backing::Options{true, false}));
    const bool track = b.granularity() != persistence::Granularity::byte;
    registrations.push_back({slot, gpa, size, b.data(), static_cast<uint32_t>(track ? KVM_MEM_LOG_DIRTY_PAGES : 0)});
    if (track) tracked.push_back({slot, b.data(), size, &b, gpa});
    pmem_e820_.push_back({gpa, size, 12});
    log::info("pmem: {} MiB of {} at guest-physical {:#x} (E820 type 12)", region.size_mib, region.path.string(), gpa);
    gpa = (gpa + size + layout::kGiB - 1) & ~(layout::kGiB - 1);
    ++slot;
  }
}

void Machine::setup_devices() {
  bool line_buffered = true;
  if (config_.serial.to_stdout) {
    serial_fd_.reset(::dup(STDOUT_FILENO));
    line_buffered = !::isatty(STDOUT_FILENO);
  } else {
    serial_fd_.reset(::open(config_.serial.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!serial_fd_) throw_errno("open serial output " + config_.serial.file.string());
  }
  serial_ = std::make_shared<Serial>(serial_fd_.get(), line_buffered, [this](bool level) { vm_->irq_line(kSerialIrq, level); });
  pio_.add(kCom1, 8, serial_);
  snapshot_devices_.push_back(serial_.get());
  rtc_ = std::make_shared<RtcCmos>();
  pio_.add(RtcCmos::kBase, 2, rtc_);
  snapshot_devices_.push_back(rtc_.get());
  setup_virtio();
  auto on_event = [this](SystemEvent e) { on_system_event(e); };
  pio_.add(SystemControl::kPm1aControl, 2, std::make_shared<SystemControl>(SystemControl::kPm1aControl, on_event));
  pio_.add(SystemControl::kI8042Command, 1, std::make_shared<SystemControl>(SystemControl::kI8042Command, on_event));
  // 0xCF9 sits inside the PCI configuration ports when there is a PCI bus.
  auto reset_control = std::make_shared<SystemControl>(SystemControl::kResetControl, on_event);
  if (pci_)
    pci_->set_reset_control(reset_control);
  else
    pio_.add(SystemControl::kResetControl, 1, reset_control);
}

void Machine::create_vcpus(bool with_boot_cpuid_and_msrs) {
  if (with_boot_cpuid_and_msrs) supported_cpuid_ = kvm_.supported_cpuid();
  vcpus_ = std::make_unique<VcpuSet>([this](Vcpu& v, VcpuExit why) {
    switch (why) {
      case VcpuExit::power_off: request_exit(0, "guest powered off"); break;
      case VcpuExit::reset: on_guest_reset(0, "guest reset"); break;
      // A PC resets on a triple fault, and Linux uses one as its last way to reboot; vcpu.cpp
      // has already logged the registers.
      case VcpuExit::triple_fault: on_guest_reset(1, fmt::format("vcpu{} triple fault", v.index())); break;
      case VcpuExit::internal_error: request_exit(1, fmt::format("vcpu{} KVM internal error", v.index())); break;
      case VcpuExit::failed_entry: request_exit(1, fmt::format("vcpu{} failed to enter the guest", v.index())); break;
      case VcpuExit::vmm_error: request_exit(1, fmt::format("vcpu{} VMM error", v.index())); break;
      case VcpuExit::none: break;
    }
  });
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    auto vcpu = std::make_unique<Vcpu>(VcpuFd(*vm_, kvm_, i), pio_, mmio_);
    if (with_boot_cpuid_and_msrs) {
      vcpu->fd().set_cpuid(x86::vcpu_cpuid(supported_cpuid_, i, config_.vcpus));
      vcpu->fd().set_msrs(x86::boot_msrs(supported_msrs_));
    }
    vcpus_->add(std::move(vcpu));
  }
}

void Machine::load_guest() {
  if (will_resume()) return restore_checkpoint();
  if (image_ && image_->status() == persistence::ImageStatus::resumable)
    log::info("--cold: not resuming checkpoint gen={}", image_->generation());
  auto kernel = read_file(config_.kernel, memory_->size());
  std::vector<uint8_t> initrd;
  if (config_.initrd) initrd = read_file(*config_.initrd, memory_->size());
  try {
    if (looks_like_bzimage(kernel)) {
      LinuxBoot linux_boot = load_linux(kernel, initrd, config_.cmdline, *memory_, pmem_e820_);
      entry_ = linux_boot.entry64;
      pvh_start_info_ = 0;
    } else if (looks_like_elf(kernel)) {
      LoadedElf elf = load_elf(kernel, *memory_);
      entry_ = elf.entry64;
      const auto module = place_initrd(*memory_, initrd, memory_->regions()[0].size, elf.highest);
      // Both boot ABIs at once: %rbx gets the PVH start info (testos and other PVH kernels),
      // %rsi a Linux zero page, so a Linux vmlinux enters at startup_64 as from a bzImage.
      pvh_start_info_ = write_pvh_start_info(*memory_, config_.cmdline, module, pmem_e820_);
      write_zero_page(*memory_, {}, module, pmem_e820_);
    } else {
      throw std::runtime_error("neither an ELF64 kernel nor a bzImage");
    }
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(config_.kernel.string() + ": " + e.what());
  }
  x86::write_boot_tables(*memory_);
  x86::write_mptable(*memory_, config_.vcpus, pci_interrupts());
  setup_boot_vcpu(vcpus_->at(0));
  if (image_) {
    // A checkpoint no longer matches RAM once the kernel is loaded over it; and what nvhv
    // itself wrote is not in KVM's dirty log, so it is made durable here.
    if (image_->status() == persistence::ImageStatus::resumable) image_->mark_consumed();
    image_->persist_ram();
  }
}

void Machine::setup_boot_vcpu(Vcpu& vcpu) {
  kvm_sregs sregs = vcpu.fd().get_sregs();
  x86::set_long_mode_sregs(sregs);
  vcpu.fd().set_sregs(sregs);
  vcpu.fd().set_regs(x86::long_mode_entry_regs(entry_, pvh_start_info_, layout::kZeroPage));
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  vcpu.fd().set_fpu(fpu);
}

void Machine::on_system_event(SystemEvent event) {
  // Called on a vCPU thread in the middle of an I/O exit: stop the set from here.
  vcpus_->report_exit(vcpus_->at(0), event == SystemEvent::power_off ? VcpuExit::power_off : VcpuExit::reset);
}

void Machine::on_guest_reset(int exit_status, const std::string& why) {
  if (config_.on_reset != OnReset::reboot) return request_exit(exit_status, why);
  std::lock_guard lock(exit_mu_);
  if (exit_status_) return;
  exit_status_ = 0;
  exit_reason_ = why + ": rebooting (cold boot)";
  reboot_ = true;
  exit_cv_.notify_all();
}

bool Machine::reboot_requested() const {
  std::lock_guard lock(exit_mu_);
  return reboot_;
}

void Machine::start_event_loop() {
  signals_.emplace(io_, SIGTERM, SIGINT);
  signals_->add(SIGPWR);
  wait_for_signal();
  event_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "event-loop");
    // The power-fail notice is received and the checkpoint runs here: it must not wait for a
    // vCPU thread's slice to end.
    if (!request_time_slice(kNoticePathSlice)) log::debug("event loop: this kernel keeps the default time slice (before 6.12)");
    // glibc gives a thread its own malloc arena at its first allocation, an mmap that took 50 us
    // here: now, rather than on the notice's path, which may be this thread's first allocation.
    void* volatile first = ::malloc(1);
    ::free(first);
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

void Machine::wait_for_signal() {
  signals_->async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    on_signal(signo);
    wait_for_signal();
  });
}

void Machine::on_signal(int signo) {
  switch (signo) {
    case SIGTERM: request_exit(0, "SIGTERM"); break;
    case SIGINT: request_exit(0, "SIGINT"); break;
    case SIGPWR: on_power_fail_signal(); break;
    default: break;
  }
}

void Machine::run_on_event_loop(std::function<void()> work, std::chrono::milliseconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  boost::asio::post(io_, [done, work = std::move(work)] {
    work();
    done->set_value();
  });
  finished.wait_for(limit);
}

void Machine::request_exit(int status, const std::string& reason) {
  std::lock_guard lock(exit_mu_);
  if (exit_status_) return;
  exit_status_ = status;
  exit_reason_ = reason;
  exit_cv_.notify_all();
}

int Machine::run() {
  prepare_checkpointing();
  if (config_.api_socket) {
    api_ = std::make_unique<VmApi>(*this, io_, config_.api_socket->string());
    set_state_listener([this](const std::string& s, const std::string& why) { api_->notify_state(s, why); });
  }
  running_since_ = std::chrono::steady_clock::now();
  start_event_loop();
  if (writeback_) writeback_->start();
  vcpus_->start();
  // From the process's start to the vCPU threads entering the guest: what a resume costs.
  if (resumed()) {
    const auto took = std::chrono::steady_clock::now() - options_.started_at;
    log::info("resumed gen={} in {} us", resumed_generation_, std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  }
  if (options_.lifecycle) options_.lifecycle("running", resumed() ? fmt::format("resumed gen={}", resumed_generation_) : "booted");
  // main() holds SIGPWR back from the start, so a notice that arrives while a resume has consumed
  // its checkpoint cannot kill nvhv by its default action; from here it takes a new checkpoint.
  // Only the event loop takes it, so that the notice wakes the thread that checkpoints, not a
  // thread that would then have to wake it (each wake-up can wait for a CPU). Once the run ends a
  // notice has nothing left to do: it is held back again, so that it cannot kill the process on
  // its way out either.
  run_on_event_loop([] { set_power_fail_signal_blocked(false); }, std::chrono::seconds(5));
  int status;
  {
    std::unique_lock lock(exit_mu_);
    exit_cv_.wait(lock, [&] { return exit_status_.has_value(); });
    status = *exit_status_;
  }
  run_on_event_loop([] { set_power_fail_signal_blocked(true); }, std::chrono::seconds(1));
  vcpus_->stop_and_join();
  serial_->flush_output();
  // Whatever the guest wrote to persistent regions reaches the medium on every way out, not
  // only at a power-fail checkpoint.
  if (writeback_ && !last_checkpoint()) {
    try {
      writeback_->final_flush();
    } catch (const std::exception& e) {
      log::error("final write-back failed: {}", e.what());
      status = status ? status : 1;
    }
  }
  announce("stopped", exit_reason_);
  // The channel's state dies with this run: waiting API clients get an error now, not a hang.
  if (agent_) boost::asio::post(io_, [this, why = "the VM stopped (" + exit_reason_ + ")"] { agent_->close(why); });
  if (api_) {
    // Give the event loop a moment to write out replies and notifications already queued
    // (vm.power_fail's answer, the last state change) before the sockets close.
    for (int hop = 0; hop < 3; ++hop) run_on_event_loop([] {}, std::chrono::milliseconds(200));
  }
  io_.stop();
  if (event_thread_.joinable()) event_thread_.join();
  set_state_listener({});
  api_.reset();
  log::info("stopped: {} (exit status {})", exit_reason_, status);
  return status;
}

}  // namespace nvhv
