// vCPU state saved and restored against a real /dev/kvm.
#include <gtest/gtest.h>

#include <optional>

#include "persistence/machine_state.hpp"
#include "tests/integration/nvhv_support.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/state/kvm_state.hpp"
#include "vmm/x86/boot_state.hpp"
#include "vmm/x86/layout.hpp"

namespace nvhv {
namespace {

// A vCPU stopped between KVM queueing a page fault and injecting it: with
// KVM_CAP_EXCEPTION_PAYLOAD the fault's address travels in the events, and CR2 keeps the value
// the guest last saw, in the saved state and through a restore into a new VM.
class PendingPageFault : public ::testing::Test {
 protected:
  static constexpr uint64_t kOldCr2 = 0x1000, kFaultAddress = 0xdead000;

  void SetUp() override {
    test::skip_without_kvm();
    if (IsSkipped()) return;
    kvm_.emplace();
    if (kvm_->check_extension(KVM_CAP_EXCEPTION_PAYLOAD) <= 0) GTEST_SKIP() << "no KVM_CAP_EXCEPTION_PAYLOAD";
    vm_.emplace(*kvm_);
    target_vm_.emplace(*kvm_);
    for (auto* vm : {&*vm_, &*target_vm_}) {
      vm->set_tss_address(layout::kKvmTss);
      vm->enable_cap(KVM_CAP_EXCEPTION_PAYLOAD, 1);
      vm->create_irqchip();
    }
    vcpu_.emplace(*vm_, *kvm_, 0);
    target_.emplace(*target_vm_, *kvm_, 0);
    kvm_sregs sregs = vcpu_->get_sregs();
    x86::set_long_mode_sregs(sregs);
    sregs.cr2 = kOldCr2;
    vcpu_->set_sregs(sregs);
    vcpu_->set_regs(x86::long_mode_entry_regs(0x123456, 0x7000, 0x8000));
    kvm_vcpu_events events = vcpu_->get_vcpu_events();
    events.flags = KVM_VCPUEVENT_VALID_PAYLOAD;
    events.exception.pending = 1;
    events.exception.injected = 0;
    events.exception.nr = 14;
    events.exception.has_error_code = 1;
    events.exception.error_code = 2;
    events.exception_has_payload = 1;
    events.exception_payload = kFaultAddress;
    vcpu_->set_vcpu_events(events);
    msrs_ = probe_readable_msrs(*vcpu_, kvm_->msr_index_list());
  }

  void expect_fault_kept(const persistence::VcpuState& s) {
    EXPECT_EQ(s.sregs.cr2, kOldCr2);
    EXPECT_EQ(s.events.exception.pending, 1);
    EXPECT_EQ(s.events.exception.nr, 14);
    EXPECT_EQ(s.events.exception_has_payload, 1);
    EXPECT_EQ(s.events.exception_payload, kFaultAddress);
  }

  // Made in SetUp, after the checks that skip without /dev/kvm or the capability.
  std::optional<KvmSystem> kvm_;
  std::optional<VmFd> vm_, target_vm_;
  std::optional<VcpuFd> vcpu_, target_;
  std::vector<uint32_t> msrs_;
};

TEST_F(PendingPageFault, KeepsItsAddressOutOfCr2) {
  persistence::VcpuState saved;
  save_vcpu_state(*vcpu_, msrs_, kvm_->xsave_size(), saved);
  expect_fault_kept(saved);
}

TEST_F(PendingPageFault, SurvivesARestoreIntoANewVm) {
  persistence::VcpuState saved, restored;
  save_vcpu_state(*vcpu_, msrs_, kvm_->xsave_size(), saved);
  restore_vcpu_state(*target_, saved);
  save_vcpu_state(*target_, msrs_, kvm_->xsave_size(), restored);
  expect_fault_kept(restored);
}

// The power-fail save runs on the vCPU threads, whose first allocation would create a malloc
// arena there (an mmap, 20-25 us measured): a second save into the same state reuses its buffers.
TEST_F(PendingPageFault, ASecondSaveReusesTheBuffersOfTheFirst) {
  persistence::VcpuState saved;
  save_vcpu_state(*vcpu_, msrs_, kvm_->xsave_size(), saved);
  const uint8_t* xsave = saved.xsave.data();
  const kvm_msr_entry* msrs = saved.msrs.data();
  ASSERT_EQ(saved.msrs.size(), msrs_.size());
  save_vcpu_state(*vcpu_, msrs_, kvm_->xsave_size(), saved);
  EXPECT_EQ(saved.xsave.data(), xsave);
  EXPECT_EQ(saved.msrs.data(), msrs);
  const auto fresh = vcpu_->get_msrs(msrs_);
  ASSERT_EQ(saved.msrs.size(), fresh.size());
  for (size_t i = 0; i < fresh.size(); ++i) EXPECT_EQ(saved.msrs[i].index, fresh[i].index) << "MSR #" << i;
  EXPECT_EQ(saved.xsave, vcpu_->get_xsave(kvm_->xsave_size()));
}

}  // namespace
}  // namespace nvhv
