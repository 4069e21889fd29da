// vCPU state reads against a real /dev/kvm: the one-ioctl path of a power-fail checkpoint must
// read exactly what the three ioctls it replaces read.
#include <gtest/gtest.h>

#include <cstring>

#include "persistence/codec.hpp"
#include "persistence/machine_state.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/state/kvm_state.hpp"
#include "vmm/x86/boot_state.hpp"
#include "vmm/x86/layout.hpp"

namespace nvhv {
namespace {

template <typename T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

class SyncedRegisterReads : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto fields = static_cast<uint64_t>(kvm_.check_extension(KVM_CAP_SYNC_REGS));
    if ((fields & VcpuFd::kSyncedState) != VcpuFd::kSyncedState) GTEST_SKIP() << "KVM_CAP_SYNC_REGS lacks regs, sregs or events";
    vm_.set_tss_address(layout::kKvmTss);
    vm_.create_irqchip();
    vcpu_.emplace(vm_, kvm_, 0);
    // Distinctive values in all three structures, so a stale or zeroed copy cannot pass.
    kvm_sregs sregs = vcpu_->get_sregs();
    x86::set_long_mode_sregs(sregs);
    sregs.cr2 = 0xdead0000;
    vcpu_->set_sregs(sregs);
    kvm_regs regs = x86::long_mode_entry_regs(0x123456, 0x7000, 0x8000);
    regs.rax = 0x1122334455667788;
    regs.r15 = 0xfeedface;
    vcpu_->set_regs(regs);
    kvm_vcpu_events events = vcpu_->get_vcpu_events();
    events.nmi.masked = 1;
    events.flags = 0;
    vcpu_->set_vcpu_events(events);
  }

  KvmSystem kvm_;
  VmFd vm_{kvm_};
  std::optional<VcpuFd> vcpu_;
};

TEST_F(SyncedRegisterReads, ReadWhatTheIoctlsRead) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_vcpu_events events{};
  vcpu_->read_synced_state(regs, sregs, events);
  EXPECT_EQ(regs.rax, 0x1122334455667788u);
  EXPECT_EQ(regs.r15, 0xfeedfaceu);
  EXPECT_EQ(regs.rip, 0x123456u);
  EXPECT_EQ(sregs.cr2, 0xdead0000u);
  EXPECT_EQ(events.nmi.masked, 1);
  EXPECT_TRUE(same_bytes(regs, vcpu_->get_regs()));
  EXPECT_TRUE(same_bytes(sregs, vcpu_->get_sregs()));
  EXPECT_TRUE(same_bytes(events, vcpu_->get_vcpu_events()));
}

TEST_F(SyncedRegisterReads, LeaveTheRunAreaAsItWas) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_vcpu_events events{};
  vcpu_->read_synced_state(regs, sregs, events);
  // Left set, every later exit would copy the registers out, and the next KVM_RUN would not run.
  EXPECT_EQ(vcpu_->run_area()->kvm_valid_regs, 0u);
  EXPECT_EQ(vcpu_->run_area()->immediate_exit, 0);
}

TEST_F(SyncedRegisterReads, SaveTheSameVcpuStateEitherWay) {
  const auto msrs = probe_readable_msrs(*vcpu_, kvm_.msr_index_list());
  persistence::VcpuState by_ioctls, by_run;
  save_vcpu_state(*vcpu_, msrs, kvm_.xsave_size(), RegisterReads::ioctls, by_ioctls);
  save_vcpu_state(*vcpu_, msrs, kvm_.xsave_size(), RegisterReads::synced_run, by_run);
  std::vector<uint8_t> a, b;
  persistence::Encoder ea(a), eb(b);
  persistence::encode(ea, by_ioctls);
  persistence::encode(eb, by_run);
  // The TSC MSR moves on between the two reads; everything else must match byte for byte.
  ASSERT_EQ(by_ioctls.msrs.size(), by_run.msrs.size());
  for (size_t i = 0; i < by_run.msrs.size(); ++i)
    if (by_run.msrs[i].index == 0x10) by_run.msrs[i].data = by_ioctls.msrs[i].data;
  std::vector<uint8_t> c;
  persistence::Encoder ec(c);
  persistence::encode(ec, by_run);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(a, c);
}

}  // namespace
}  // namespace nvhv
