// The persistent half of Machine: resuming a committed checkpoint, and the power-fail path.
#include <fmt/core.h>
#include <time.h>

#include <exception>
#include <future>

#include "persistence/snapshottable.hpp"
#include "vmm/base/fault_injection.hpp"
#include "vmm/base/log.hpp"
#include "vmm/base/wall_clock.hpp"
#include "vmm/machine.hpp"
#include "vmm/state/kvm_state.hpp"

namespace nvhv {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t micros(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
}

}  // namespace

void Machine::restore_checkpoint() {
  const uint64_t generation = image_->generation();
  if (const uint64_t committed = image_->committed_at_ns(); committed) {
    // Realtime stamps: comparable across a host reboot, unlike the figures of the process that
    // took the checkpoint, whose stderr may have been lost with the power.
    log::info("checkpoint gen={}: state saved at {} ns, committed at {} ns (realtime)", generation, image_->saved_at_ns(), committed);
  }
  persistence::MachineState state;
  try {
    state = image_->load_checkpoint();
  } catch (const persistence::DecodeError& e) {
    throw std::runtime_error(fmt::format("checkpoint gen={} cannot be decoded ({}); the image was left as it is. "
                                         "Run with --cold to boot fresh instead.",
                                         generation, e.what()));
  }
  if (state.vcpus.size() != vcpus_->size())
    throw std::runtime_error(fmt::format("checkpoint gen={} holds {} vCPUs, the VM has {}", generation, state.vcpus.size(), vcpus_->size()));
  const uint32_t tsc_khz_here = vcpus_->at(0).fd().get_tsc_khz();
  if (state.host_tsc_khz && state.vcpus[0].tsc_khz != tsc_khz_here)
    log::warn("checkpoint was taken with a {} kHz TSC, this host runs the guest at {} kHz; guest time may drift",
              state.vcpus[0].tsc_khz, tsc_khz_here);

  // KVM_SET_XSAVE reads as many bytes as this host's XSAVE area has (KVM_CAP_XSAVE2), whatever
  // the buffer holds: a smaller saved area must be refused, not handed over.
  const size_t xsave_size = kvm_.xsave_size();
  for (size_t i = 0; i < state.vcpus.size(); ++i)
    if (state.vcpus[i].xsave.size() < xsave_size)
      throw std::runtime_error(fmt::format("checkpoint gen={}: vcpu{} XSAVE area is {} bytes, this host needs {}", generation, i,
                                           state.vcpus[i].xsave.size(), xsave_size));

  restore_vm_state(*vm_, state.vm);
  std::vector<persistence::Snapshottable*> devices(snapshot_devices_.begin(), snapshot_devices_.end());
  persistence::restore_devices(devices, state.devices);
  for (size_t i = 0; i < vcpus_->size(); ++i) restore_vcpu_state(vcpus_->at(i).fd(), state.vcpus[i]);
  fault_point("resume:after-restore");
  // From the first guest instruction on, RAM moves away from the checkpoint: it must never be
  // resumed again, even if this process dies before taking a new one.
  image_->mark_consumed();
  fault_point("resume:after-consume");
  resumed_generation_ = generation;
  track_swap_dirty_pages(generation);  // before the write-back's first pass: it must see them all
  // Already the shape of the next checkpoint's state: prepare_checkpointing need not read it all
  // back from KVM before the guest may run.
  // (The TSC frequency is this host's: every vCPU runs at KVM's default, which vCPU 0 told.)
  for (auto& v : state.vcpus) v.tsc_khz = tsc_khz_here;
  save_buffer_ = std::move(state);
}

// After a resume the save buffer holds the checkpoint just restored, which was itself a dry run
// of this host's save (it fitted its slot), unless the MSRs to save or the XSAVE size changed.
bool Machine::restored_state_fits_save_buffer() const {
  if (!resumed() || save_buffer_.vcpus.size() != vcpus_->size()) return false;
  for (const auto& v : save_buffer_.vcpus) {
    if (v.xsave.size() != xsave_size_ || v.msrs.size() != checkpoint_msrs_.size()) return false;
    for (size_t i = 0; i < v.msrs.size(); ++i)
      if (v.msrs[i].index != checkpoint_msrs_[i]) return false;
  }
  return true;
}

void Machine::prepare_checkpointing() {
  if (!image_) return;
  // Size every buffer now and do one full dry run of the save, so that the power-fail path
  // neither allocates nor meets an unreadable register for the first time.
  xsave_size_ = kvm_.xsave_size();
  checkpoint_msrs_ = probe_readable_msrs(vcpus_->at(0).fd(), supported_msrs_);
  if (restored_state_fits_save_buffer()) {
    log::debug("checkpoint: {} MSRs, {} bytes of XSAVE, sized from the resumed checkpoint", checkpoint_msrs_.size(), xsave_size_);
    return;
  }
  save_buffer_.vcpus.resize(vcpus_->size());
  for (size_t i = 0; i < vcpus_->size(); ++i) save_vcpu_state(vcpus_->at(i).fd(), checkpoint_msrs_, xsave_size_, save_buffer_.vcpus[i]);
  save_buffer_.vm = save_vm_state(*vm_);
  persistence::save_devices(snapshot_devices_, save_buffer_.devices);
  std::vector<uint8_t> scratch;
  persistence::Encoder enc(scratch);
  persistence::encode(enc, save_buffer_);
  if (enc.size() > image_->geometry().slot_capacity())
    throw std::runtime_error(fmt::format("machine state ({} bytes) does not fit a checkpoint slot ({} bytes)", enc.size(),
                                         image_->geometry().slot_capacity()));
  log::debug("checkpoint: {} MSRs, {} bytes of XSAVE, {} bytes of state per checkpoint", checkpoint_msrs_.size(), xsave_size_, enc.size());
}

CheckpointFigures Machine::power_fail_checkpoint(bool exit_after) {
  if (!image_) throw std::runtime_error("guest RAM is not persistent (no memory.backing): there is nothing to checkpoint to");
  if (checkpoint_started_.exchange(true)) throw std::runtime_error("a power-fail checkpoint is already in progress");
  announce("checkpointing", "power-fail notice");
  CheckpointFigures f;
  const auto t0 = Clock::now();
  bool writeback_stopped = false;
  try {
    std::vector<std::exception_ptr> errors(vcpus_->size());
    bool paused = vcpus_->pause([&](Vcpu& v) {
      try {
        save_vcpu_state(v.fd(), checkpoint_msrs_, xsave_size_, save_buffer_.vcpus[v.index()]);
      } catch (...) {
        errors[v.index()] = std::current_exception();
      }
    });
    if (!paused) throw std::runtime_error("the VM stopped before its vCPUs could be paused");
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    const auto t1 = Clock::now();
    fault_point("checkpoint:after-pause");
    quiesce_devices();  // no host-initiated device work (console input) touches RAM from here
    // A resumed guest believes every write it saw completed is on its disk. With the vCPUs
    // stopped no request is in flight, so the disks' fdatasync (a journal commit, often the
    // slowest step) runs beside the state save and the RAM flush.
    std::future<void> disks_synced;
    if (!disks_.empty()) disks_synced = std::async(std::launch::async, [this] { sync_disks(); });

    save_buffer_.vm = save_vm_state(*vm_);
    persistence::save_devices(snapshot_devices_, save_buffer_.devices);
    save_buffer_.saved_at_realtime_ns = realtime_ns();
    save_buffer_.host_tsc_khz = save_buffer_.vcpus[0].tsc_khz;
    serial_->flush_output();
    const auto t2 = Clock::now();

    image_->prepare(save_buffer_);
    fault_point("checkpoint:after-prepare");
    if (writeback_) {
      writeback_stopped = true;
      auto flushed = writeback_->final_flush();
      f.flushed_bytes = flushed.bytes;
    } else {
      backing_->drain();  // byte granularity: stores are durable once fenced
    }
    if (disks_synced.valid()) disks_synced.get();
    fault_point("checkpoint:after-ram-flush");
    const auto t3 = Clock::now();

    f.generation = image_->commit();
    const auto t4 = Clock::now();
    fault_point("checkpoint:after-commit");

    f.vcpu_us = micros(t0, t1);
    f.devices_us = micros(t1, t2);
    f.flush_us = micros(t2, t3);
    f.commit_us = micros(t3, t4);
    f.total_us = micros(t0, t4);
  } catch (...) {
    // Nothing was published: the previous checkpoint (if any) stays in force and the guest
    // goes on running, so a later notice can try again.
    if (writeback_stopped) writeback_->start();
    resume_devices();
    if (!paused_by_operator_) vcpus_->resume();
    checkpoint_started_ = false;
    announce(paused_by_operator_ ? "paused" : "running", "power-fail checkpoint failed");
    throw;
  }
  log::info("power-fail checkpoint gen={} vcpu_us={} devices_us={} flush_us={} commit_us={} total_us={} flushed_bytes={}",
            f.generation, f.vcpu_us, f.devices_us, f.flush_us, f.commit_us, f.total_us, f.flushed_bytes);
  {
    std::lock_guard lock(figures_mu_);
    last_figures_ = f;
  }
  announce("stopping", fmt::format("power-fail checkpoint gen={} committed", f.generation));
  if (exit_after) request_exit(0, fmt::format("power-fail checkpoint gen={} committed", f.generation));
  return f;
}

std::optional<CheckpointFigures> Machine::last_checkpoint() const {
  std::lock_guard lock(figures_mu_);
  return last_figures_;
}

void Machine::on_power_fail_signal() {
  if (!image_) {
    log::warn("power-fail notice, but guest RAM is not persistent (no memory.backing): stopping without a checkpoint");
    request_exit(0, "SIGPWR without persistent memory");
    return;
  }
  // Several notices for one power failure are normal (a UPS daemon and systemd both send one).
  if (checkpoint_started_) {
    log::info("power-fail notice: a checkpoint is already under way");
    return;
  }
  try {
    power_fail_checkpoint();
  } catch (const std::exception& e) {
    log::error("power-fail checkpoint failed: {}", e.what());
  }
}

}  // namespace nvhv
