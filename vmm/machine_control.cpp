// Operator control of a running Machine: pause/resume, state and figures for the API.
#include <stdexcept>

#include "vmm/machine.hpp"
#include "vmm/vm_api.hpp"

namespace nvhv {

void Machine::pause_guest() {
  if (checkpoint_started_) throw std::logic_error("a power-fail checkpoint is in progress");
  if (!vcpus_->pause()) throw std::logic_error("the VM is stopping");
  if (!paused_by_operator_.exchange(true)) announce("paused", "vm.pause");
}

void Machine::resume_guest() {
  if (checkpoint_started_) throw std::logic_error("a power-fail checkpoint is in progress: the guest will not run again");
  if (vcpus_->stopping()) throw std::logic_error("the VM is stopping");
  if (paused_by_operator_.exchange(false)) {
    vcpus_->resume();
    announce("running", "vm.resume");
  }
}

std::string Machine::state() const {
  if (vcpus_->stopping()) return "stopping";
  if (checkpoint_started_) return "checkpointing";
  if (paused_by_operator_) return "paused";
  return "running";
}

double Machine::uptime_seconds() const {
  if (running_since_ == std::chrono::steady_clock::time_point{}) return 0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - running_since_).count();
}

uint64_t Machine::checkpoint_generation() const {
  if (auto f = last_checkpoint()) return f->generation;
  return resumed_generation_;
}

void Machine::set_state_listener(std::function<void(const std::string&, const std::string&)> listener) {
  std::lock_guard lock(listener_mu_);
  state_listener_ = std::move(listener);
}

void Machine::set_api(std::unique_ptr<VmApi> api) { api_ = std::move(api); }

void Machine::announce(const std::string& new_state, const std::string& reason) {
  if (options_.lifecycle) options_.lifecycle(new_state, reason);
  std::lock_guard lock(listener_mu_);
  if (state_listener_) state_listener_(new_state, reason);
}

}  // namespace nvhv
