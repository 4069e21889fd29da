#pragma once
// Thin RAII wrappers over the KVM ioctl API: the system fd (/dev/kvm), a VM fd and a vCPU fd.
// Every failing ioctl throws SystemError naming the ioctl.
#include "vmm/kvm/kvm_uapi.hpp"

#include <cstdint>
#include <memory>
#include <vector>

#include "vmm/base/mapping.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv {

class KvmSystem {
 public:
  explicit KvmSystem(const char* path = "/dev/kvm");
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  int max_vcpus() const;
  size_t vcpu_mmap_size() const;
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;
  std::vector<uint32_t> msr_index_list() const;
  std::vector<uint32_t> feature_msr_index_list() const;
  // Size in bytes of the XSAVE buffer KVM_GET_XSAVE2 fills (at least sizeof(kvm_xsave)).
  size_t xsave_size() const;

 private:
  UniqueFd fd_;
};

class VmFd {
 public:
  explicit VmFd(const KvmSystem& kvm);
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  void set_tss_address(uint64_t addr);
  void set_identity_map_address(uint64_t addr);
  void create_irqchip();
  void create_pit2();
  void set_user_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host, uint32_t flags = 0);
  void irq_line(uint32_t irq, bool level);
  void enable_cap(uint32_t cap, uint64_t arg0 = 0);

  kvm_irqchip get_irqchip(uint32_t chip_id) const;
  void set_irqchip(const kvm_irqchip& chip);
  kvm_pit_state2 get_pit2() const;
  void set_pit2(const kvm_pit_state2& pit);
  kvm_clock_data get_clock() const;
  void set_clock(const kvm_clock_data& clock);
  // Fetches (and, with manual protect, does not clear) the dirty bitmap of a memory slot.
  void get_dirty_log(uint32_t slot, uint64_t* bitmap);
  void clear_dirty_log(uint32_t slot, uint64_t first_page, uint32_t num_pages, uint64_t* bitmap);

  // --- PCI/virtio interrupt delivery ---
  // KVM_SIGNAL_MSI: injects one MSI through the in-kernel irqchip. Returns KVM's result (> 0
  // delivered, 0 blocked by the guest) or -errno; never throws, because a guest-programmed
  // message that reaches no vCPU makes the ioctl fail and must not stop the VMM.
  int signal_msi(uint64_t address, uint32_t data);

 private:
  UniqueFd fd_;
};

class VcpuFd {
 public:
  VcpuFd(const VmFd& vm, const KvmSystem& kvm, uint32_t index);
  int fd() const { return fd_.get(); }
  kvm_run* run_area() const { return static_cast<kvm_run*>(run_.get()); }
  size_t run_area_size() const { return run_.size(); }
  uint32_t index() const { return index_; }

  // KVM_RUN; returns false when interrupted by a signal (EINTR/EAGAIN), true on a real exit.
  bool run();

  kvm_regs get_regs() const;
  void set_regs(const kvm_regs& regs);
  kvm_sregs get_sregs() const;
  void set_sregs(const kvm_sregs& sregs);
  void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  std::vector<kvm_cpuid_entry2> get_cpuid(size_t max_entries = 256) const;
  kvm_mp_state get_mp_state() const;
  void set_mp_state(const kvm_mp_state& state);
  kvm_lapic_state get_lapic() const;
  void set_lapic(const kvm_lapic_state& lapic);
  kvm_fpu get_fpu() const;
  void set_fpu(const kvm_fpu& fpu);
  std::vector<uint8_t> get_xsave(size_t size) const;
  // Into a buffer the caller keeps: a buffer already of the right size is not reallocated, so the
  // power-fail path, which runs on the vCPU threads, does not allocate.
  void get_xsave(size_t size, std::vector<uint8_t>& into) const;
  void set_xsave(const std::vector<uint8_t>& xsave);
  kvm_xcrs get_xcrs() const;
  void set_xcrs(const kvm_xcrs& xcrs);
  kvm_debugregs get_debugregs() const;
  void set_debugregs(const kvm_debugregs& regs);
  kvm_vcpu_events get_vcpu_events() const;
  void set_vcpu_events(const kvm_vcpu_events& events);
  // Reads the values of the given MSRs; fails unless KVM returned every one.
  std::vector<kvm_msr_entry> get_msrs(const std::vector<uint32_t>& indices) const;
  // The same into `into` (resized to indices.size()); up to kMsrsOnStack MSRs without allocating.
  void get_msrs(const std::vector<uint32_t>& indices, std::vector<kvm_msr_entry>& into) const;
  static constexpr size_t kMsrsOnStack = 256;
  void set_msrs(const std::vector<kvm_msr_entry>& entries);
  uint32_t get_tsc_khz() const;
  void kvmclock_ctrl();

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t index_;
};

}  // namespace nvhv
