#pragma once
// virtio-console (spec 5.3) with a single port and no optional features: receiveq 0 carries
// host input to the guest, transmitq 1 guest output to the host (hvc0 in Linux).
//
// The host side is a byte stream. Output is handed to the set_output() callback on the vCPU
// thread that notified, with the device lock held: it must not block for long and must not
// call back into this device. Input comes from inject_input() on any thread; bytes wait in a
// bounded buffer (saved in checkpoints) until the guest posts receive buffers.
#include <cstdint>
#include <deque>
#include <functional>
#include <span>

#include "devices/virtio/device.hpp"

namespace nvhv::virtio {

class VirtioConsole : public Device {
 public:
  using Output = std::function<void(std::span<const uint8_t>)>;
  // Saved in every checkpoint (whose device area is small) and encoded on the power-fail path,
  // so it stays small: the same bound as the UART's receive FIFO.
  static constexpr size_t kMaxPendingInput = 4096;
  static constexpr uint32_t kReceiveQueue = 0;
  static constexpr uint32_t kTransmitQueue = 1;

  explicit VirtioConsole(std::string id, uint16_t queue_size = 64);

  // Before the guest runs, or at any time once attached to a transport.
  void set_output(Output output);
  // Queues host input for the guest and delivers what fits now; returns how many bytes were
  // accepted (fewer than offered when the input buffer is full: the caller should stop
  // reading its source until the guest catches up, or drop). An empty span just retries
  // delivery. Requires the device to be attached to a transport.
  size_t inject_input(std::span<const uint8_t> bytes);
  size_t pending_input() const;

  uint32_t device_type() const override;
  uint32_t pci_class() const override { return 0x078000; }  // communication controller, other
  uint64_t features() const override { return 0; }
  std::vector<uint16_t> queue_max_sizes() const override { return {queue_size_, queue_size_}; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void process(uint32_t index, Queue& queue) override;

  // Version 1: the input bytes not yet delivered to the guest.
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;

 private:
  static constexpr uint32_t kConfigSize = 12;  // cols, rows, max_nr_ports, emerg_wr: all unused
  void deliver(Queue& queue);

  uint16_t queue_size_;
  Output output_;
  std::deque<uint8_t> pending_;
  Chain chain_;
};

}  // namespace nvhv::virtio
