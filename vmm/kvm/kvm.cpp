#include "vmm/kvm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <array>
#include <cstring>
#include <optional>

#include "vmm/base/error.hpp"

namespace nvhv {
namespace {

// KVM's variable-length structs (cpuid, msr lists) end in a flexible array; keep them in
// suitably aligned storage of the right size.
template <typename Header, typename Entry>
struct VarStruct {
  explicit VarStruct(size_t n) : storage((sizeof(Header) + n * sizeof(Entry) + 7) / 8, 0) {}
  Header* get() { return reinterpret_cast<Header*>(storage.data()); }
  std::vector<uint64_t> storage;
};

std::vector<uint32_t> msr_list(int fd, unsigned long request, const char* name) {
  kvm_msr_list probe{};
  if (::ioctl(fd, request, &probe) < 0 && errno != E2BIG) throw_errno(name);
  VarStruct<kvm_msr_list, uint32_t> list(probe.nmsrs);
  list.get()->nmsrs = probe.nmsrs;
  checked_ioctl(fd, request, name, list.get());
  return {list.get()->indices, list.get()->indices + list.get()->nmsrs};
}

}  // namespace

KvmSystem::KvmSystem(const char* path) : fd_(::open(path, O_RDWR | O_CLOEXEC)) {
  if (!fd_) throw_errno(std::string("open ") + path);
  int version = static_cast<int>(NVHV_IOCTL(fd(), KVM_GET_API_VERSION, 0));
  if (version != KVM_API_VERSION)
    throw std::runtime_error("KVM API version " + std::to_string(version) + " is not the expected 12");
}

int KvmSystem::check_extension(long cap) const { return static_cast<int>(NVHV_IOCTL(fd(), KVM_CHECK_EXTENSION, cap)); }

int KvmSystem::max_vcpus() const {
  int n = check_extension(KVM_CAP_MAX_VCPUS);
  return n > 0 ? n : 4;
}

size_t KvmSystem::vcpu_mmap_size() const { return static_cast<size_t>(NVHV_IOCTL(fd(), KVM_GET_VCPU_MMAP_SIZE, 0)); }

std::vector<kvm_cpuid_entry2> KvmSystem::supported_cpuid() const {
  constexpr size_t kMax = 256;
  VarStruct<kvm_cpuid2, kvm_cpuid_entry2> cpuid(kMax);
  cpuid.get()->nent = kMax;
  NVHV_IOCTL(fd(), KVM_GET_SUPPORTED_CPUID, cpuid.get());
  return {cpuid.get()->entries, cpuid.get()->entries + cpuid.get()->nent};
}

std::vector<uint32_t> KvmSystem::msr_index_list() const {
  return msr_list(fd(), KVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST");
}

std::vector<uint32_t> KvmSystem::feature_msr_index_list() const {
  return msr_list(fd(), KVM_GET_MSR_FEATURE_INDEX_LIST, "KVM_GET_MSR_FEATURE_INDEX_LIST");
}

size_t KvmSystem::xsave_size() const {
  int size = check_extension(KVM_CAP_XSAVE2);
  return size > static_cast<int>(sizeof(kvm_xsave)) ? static_cast<size_t>(size) : sizeof(kvm_xsave);
}

VmFd::VmFd(const KvmSystem& kvm) : fd_(static_cast<int>(NVHV_IOCTL(kvm.fd(), KVM_CREATE_VM, 0))) {
  ::fcntl(fd_.get(), F_SETFD, FD_CLOEXEC);
}

int VmFd::check_extension(long cap) const { return static_cast<int>(NVHV_IOCTL(fd(), KVM_CHECK_EXTENSION, cap)); }
void VmFd::set_tss_address(uint64_t addr) { NVHV_IOCTL(fd(), KVM_SET_TSS_ADDR, addr); }
void VmFd::set_identity_map_address(uint64_t addr) { NVHV_IOCTL(fd(), KVM_SET_IDENTITY_MAP_ADDR, &addr); }
void VmFd::create_irqchip() { NVHV_IOCTL(fd(), KVM_CREATE_IRQCHIP, 0); }
void VmFd::create_pit2() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  NVHV_IOCTL(fd(), KVM_CREATE_PIT2, &config);
}

void VmFd::set_user_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host, uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_phys;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  NVHV_IOCTL(fd(), KVM_SET_USER_MEMORY_REGION, &region);
}

void VmFd::irq_line(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  NVHV_IOCTL(fd(), KVM_IRQ_LINE, &l);
}

void VmFd::enable_cap(uint32_t cap, uint64_t arg0) {
  kvm_enable_cap c{};
  c.cap = cap;
  c.args[0] = arg0;
  NVHV_IOCTL(fd(), KVM_ENABLE_CAP, &c);
}

kvm_irqchip VmFd::get_irqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  NVHV_IOCTL(fd(), KVM_GET_IRQCHIP, &chip);
  return chip;
}
void VmFd::set_irqchip(const kvm_irqchip& chip) { NVHV_IOCTL(fd(), KVM_SET_IRQCHIP, &chip); }
kvm_pit_state2 VmFd::get_pit2() const {
  kvm_pit_state2 pit{};
  NVHV_IOCTL(fd(), KVM_GET_PIT2, &pit);
  return pit;
}
void VmFd::set_pit2(const kvm_pit_state2& pit) { NVHV_IOCTL(fd(), KVM_SET_PIT2, &pit); }
kvm_clock_data VmFd::get_clock() const {
  kvm_clock_data clock{};
  NVHV_IOCTL(fd(), KVM_GET_CLOCK, &clock);
  return clock;
}
void VmFd::set_clock(const kvm_clock_data& clock) { NVHV_IOCTL(fd(), KVM_SET_CLOCK, &clock); }

void VmFd::get_dirty_log(uint32_t slot, uint64_t* bitmap) {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap;
  NVHV_IOCTL(fd(), KVM_GET_DIRTY_LOG, &log);
}

void VmFd::clear_dirty_log(uint32_t slot, uint64_t first_page, uint32_t num_pages, uint64_t* bitmap) {
  kvm_clear_dirty_log clear{};
  clear.slot = slot;
  clear.first_page = first_page;
  clear.num_pages = num_pages;
  clear.dirty_bitmap = bitmap;
  NVHV_IOCTL(fd(), KVM_CLEAR_DIRTY_LOG, &clear);
}

// --- PCI/virtio interrupt delivery ---
int VmFd::signal_msi(uint64_t address, uint32_t data) {
  kvm_msi msi{};
  msi.address_lo = static_cast<uint32_t>(address);
  msi.address_hi = static_cast<uint32_t>(address >> 32);
  msi.data = data;
  for (;;) {
    const int rc = ::ioctl(fd(), KVM_SIGNAL_MSI, &msi);
    if (rc >= 0) return rc;
    if (errno != EINTR) return -errno;
  }
}

VcpuFd::VcpuFd(const VmFd& vm, const KvmSystem& kvm, uint32_t index)
    : fd_(static_cast<int>(NVHV_IOCTL(vm.fd(), KVM_CREATE_VCPU, index))), index_(index) {
  ::fcntl(fd_.get(), F_SETFD, FD_CLOEXEC);
  size_t size = kvm.vcpu_mmap_size();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap kvm_run");
  run_ = Mapping(p, size);
}

bool VcpuFd::run() {
  if (::ioctl(fd(), KVM_RUN, 0) == 0) return true;
  if (errno == EINTR || errno == EAGAIN) return false;
  throw_errno("KVM_RUN");
}

kvm_regs VcpuFd::get_regs() const {
  kvm_regs r{};
  NVHV_IOCTL(fd(), KVM_GET_REGS, &r);
  return r;
}
void VcpuFd::set_regs(const kvm_regs& r) { NVHV_IOCTL(fd(), KVM_SET_REGS, &r); }
kvm_sregs VcpuFd::get_sregs() const {
  kvm_sregs s{};
  NVHV_IOCTL(fd(), KVM_GET_SREGS, &s);
  return s;
}
void VcpuFd::set_sregs(const kvm_sregs& s) { NVHV_IOCTL(fd(), KVM_SET_SREGS, &s); }

void VcpuFd::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  VarStruct<kvm_cpuid2, kvm_cpuid_entry2> cpuid(entries.size());
  cpuid.get()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(cpuid.get()->entries, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  NVHV_IOCTL(fd(), KVM_SET_CPUID2, cpuid.get());
}

std::vector<kvm_cpuid_entry2> VcpuFd::get_cpuid(size_t max_entries) const {
  VarStruct<kvm_cpuid2, kvm_cpuid_entry2> cpuid(max_entries);
  cpuid.get()->nent = static_cast<uint32_t>(max_entries);
  NVHV_IOCTL(fd(), KVM_GET_CPUID2, cpuid.get());
  return {cpuid.get()->entries, cpuid.get()->entries + cpuid.get()->nent};
}

kvm_mp_state VcpuFd::get_mp_state() const {
  kvm_mp_state s{};
  NVHV_IOCTL(fd(), KVM_GET_MP_STATE, &s);
  return s;
}
void VcpuFd::set_mp_state(const kvm_mp_state& s) { NVHV_IOCTL(fd(), KVM_SET_MP_STATE, &s); }
kvm_lapic_state VcpuFd::get_lapic() const {
  kvm_lapic_state l{};
  NVHV_IOCTL(fd(), KVM_GET_LAPIC, &l);
  return l;
}
void VcpuFd::set_lapic(const kvm_lapic_state& l) { NVHV_IOCTL(fd(), KVM_SET_LAPIC, &l); }
kvm_fpu VcpuFd::get_fpu() const {
  kvm_fpu f{};
  NVHV_IOCTL(fd(), KVM_GET_FPU, &f);
  return f;
}
void VcpuFd::set_fpu(const kvm_fpu& f) { NVHV_IOCTL(fd(), KVM_SET_FPU, &f); }

std::vector<uint8_t> VcpuFd::get_xsave(size_t size) const {
  std::vector<uint8_t> buf;
  get_xsave(size, buf);
  return buf;
}
void VcpuFd::get_xsave(size_t size, std::vector<uint8_t>& into) const {
  into.resize(std::max(size, sizeof(kvm_xsave)));
  if (size > sizeof(kvm_xsave))
    NVHV_IOCTL(fd(), KVM_GET_XSAVE2, into.data());
  else
    NVHV_IOCTL(fd(), KVM_GET_XSAVE, into.data());
}
void VcpuFd::set_xsave(const std::vector<uint8_t>& xsave) {
  if (xsave.size() < sizeof(kvm_xsave)) throw std::runtime_error("xsave buffer smaller than struct kvm_xsave");
  NVHV_IOCTL(fd(), KVM_SET_XSAVE, const_cast<uint8_t*>(xsave.data()));
}
kvm_xcrs VcpuFd::get_xcrs() const {
  kvm_xcrs x{};
  NVHV_IOCTL(fd(), KVM_GET_XCRS, &x);
  return x;
}
void VcpuFd::set_xcrs(const kvm_xcrs& x) { NVHV_IOCTL(fd(), KVM_SET_XCRS, &x); }
kvm_debugregs VcpuFd::get_debugregs() const {
  kvm_debugregs d{};
  NVHV_IOCTL(fd(), KVM_GET_DEBUGREGS, &d);
  return d;
}
void VcpuFd::set_debugregs(const kvm_debugregs& d) { NVHV_IOCTL(fd(), KVM_SET_DEBUGREGS, &d); }
kvm_vcpu_events VcpuFd::get_vcpu_events() const {
  kvm_vcpu_events e{};
  NVHV_IOCTL(fd(), KVM_GET_VCPU_EVENTS, &e);
  return e;
}
void VcpuFd::set_vcpu_events(const kvm_vcpu_events& e) { NVHV_IOCTL(fd(), KVM_SET_VCPU_EVENTS, &e); }

std::vector<kvm_msr_entry> VcpuFd::get_msrs(const std::vector<uint32_t>& indices) const {
  std::vector<kvm_msr_entry> out;
  get_msrs(indices, out);
  return out;
}

void VcpuFd::get_msrs(const std::vector<uint32_t>& indices, std::vector<kvm_msr_entry>& into) const {
  // struct kvm_msrs with its entries, on the stack when they fit.
  alignas(kvm_msrs) std::array<uint8_t, sizeof(kvm_msrs) + kMsrsOnStack * sizeof(kvm_msr_entry)> on_stack;
  std::optional<VarStruct<kvm_msrs, kvm_msr_entry>> on_heap;
  kvm_msrs* msrs = reinterpret_cast<kvm_msrs*>(on_stack.data());
  if (indices.size() > kMsrsOnStack) msrs = on_heap.emplace(indices.size()).get();
  msrs->nmsrs = static_cast<uint32_t>(indices.size());
  msrs->pad = 0;
  for (size_t i = 0; i < indices.size(); ++i) msrs->entries[i] = kvm_msr_entry{indices[i], 0, 0};
  long n = NVHV_IOCTL(fd(), KVM_GET_MSRS, msrs);
  if (static_cast<size_t>(n) != indices.size())
    throw std::runtime_error("KVM_GET_MSRS: MSR " + std::to_string(indices[static_cast<size_t>(n)]) + " not readable");
  into.assign(msrs->entries, msrs->entries + n);
}

void VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& entries) {
  VarStruct<kvm_msrs, kvm_msr_entry> msrs(entries.size());
  msrs.get()->nmsrs = static_cast<uint32_t>(entries.size());
  std::memcpy(msrs.get()->entries, entries.data(), entries.size() * sizeof(kvm_msr_entry));
  long n = NVHV_IOCTL(fd(), KVM_SET_MSRS, msrs.get());
  if (static_cast<size_t>(n) != entries.size())
    throw std::runtime_error("KVM_SET_MSRS: MSR " + std::to_string(entries[static_cast<size_t>(n)].index) + " rejected");
}

uint32_t VcpuFd::get_tsc_khz() const { return static_cast<uint32_t>(NVHV_IOCTL(fd(), KVM_GET_TSC_KHZ, 0)); }
void VcpuFd::kvmclock_ctrl() { NVHV_IOCTL(fd(), KVM_KVMCLOCK_CTRL, 0); }

}  // namespace nvhv
