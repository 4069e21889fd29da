// The Machine's PCI devices: a host bridge, and a virtio-pci transport per virtio device.
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/machine.hpp"

namespace nvhv {

void Machine::setup_virtio() {
  if (config_.disks.empty() && !config_.console) return;
  irq_sink_ = std::make_unique<pci::KvmInterruptSink>(*vm_);
  // Device stores into guest RAM bypass KVM's dirty log: tell the write-back about them.
  virtio::GuestDma dma(*memory_, [this](uint64_t gpa, uint64_t len) {
    if (writeback_) writeback_->note_write(gpa, len);
  });
  pci_ = pci::Bus::create(pio_, mmio_, *irq_sink_);
  snapshot_devices_.push_back(pci_.get());
  // Devices are added in a fixed order: their ids and BAR placement must match at a resume.
  for (size_t i = 0; i < config_.disks.size(); ++i) {
    const auto& d = config_.disks[i];
    auto blk = std::make_shared<virtio::VirtioBlk>(fmt::format("virtio-blk{}", i), virtio::BlkOptions{d.path.string(), d.readonly, "", 256});
    auto transport = std::make_shared<virtio::VirtioPci>(blk, dma, *irq_sink_);
    pci_->add(transport);
    disks_.push_back(blk);
    transports_.push_back(transport);
    snapshot_devices_.push_back(transport.get());
    log::info("virtio-blk{}: {}{} ({} MiB)", i, d.path.string(), d.readonly ? " read-only" : "", blk->capacity_sectors() >> 11);
  }
  if (config_.console) {
    auto console = std::make_shared<virtio::VirtioConsole>("virtio-console0");
    AgentChannel::Options agent_options;
    if (config_.console->log) {
      console_log_fd_.reset(::open(config_.console->log->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644));
      if (!console_log_fd_) throw_errno("open console log " + config_.console->log->string());
      agent_options.log_fd = console_log_fd_.get();
    }
    // The console is the guest agent's channel; its inject_input is only called once the device
    // is attached to the transport below.
    agent_ = std::make_unique<AgentChannel>(
        io_, [c = console.get()](std::span<const uint8_t> bytes) { return c->inject_input(bytes); }, agent_options);
    // Runs on a vCPU thread under the device lock: the channel copies and posts, never blocks.
    console->set_output([agent = agent_.get()](std::span<const uint8_t> bytes) { agent->on_guest_output(bytes); });
    auto transport = std::make_shared<virtio::VirtioPci>(console, dma, *irq_sink_);
    pci_->add(transport);
    console_ = console;
    transports_.push_back(transport);
    snapshot_devices_.push_back(transport.get());
  }
}

std::vector<x86::MpPciInterrupt> Machine::pci_interrupts() const {
  std::vector<x86::MpPciInterrupt> out;
  if (pci_)
    for (const auto& r : pci_->intx_routes()) out.push_back({r.slot, r.pin, r.gsi});
  return out;
}

void Machine::quiesce_devices() {
  for (auto& t : transports_) t->quiesce();
}

void Machine::resume_devices() {
  for (auto& t : transports_) t->resume();
}

void Machine::sync_disks() {
  for (auto& d : disks_) d->sync();
}

}  // namespace nvhv
