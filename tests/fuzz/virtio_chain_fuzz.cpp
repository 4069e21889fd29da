// Fuzzes the split-virtqueue walker and the virtio PCI transport with hostile guest state.
//
// Queue mode (first byte bit 7 clear): the input sets a queue's configuration and indices
// (as a restored checkpoint would) and fills guest RAM; the walker then pops, touches and
// completes chains. Transport mode (bit 7 set): the input is a sequence of BAR and
// configuration-space accesses against a virtio-console, then guest RAM.
//
// Whatever the input, no access may leave guest RAM (ASan sees the RAM as one heap block) and
// every store the device reports must lie inside it.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "devices/pci/pci_regs.hpp"
#include "devices/virtio/console.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "devices/virtio/virtio_spec.hpp"
#include "vmm/base/log.hpp"

namespace {

using namespace nvhv;

constexpr uint64_t kRamSize = 64 * 1024;

struct Input {
  const uint8_t* p;
  size_t n;
  template <typename T>
  T take() {
    T v{};
    const size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
};

struct Ram {
  Ram() : bytes(new uint8_t[kRamSize]), memory(bytes.get(), kRamSize) {}
  void fill(Input& in) {
    std::memset(bytes.get(), 0, kRamSize);
    std::memcpy(bytes.get(), in.p, in.n < kRamSize ? in.n : kRamSize);
  }
  void check(const uint8_t* host, uint64_t len) const {
    if (host < bytes.get() || len > kRamSize || host + len > bytes.get() + kRamSize) std::abort();
  }
  std::unique_ptr<uint8_t[]> bytes;
  GuestMemory memory;
};

Ram& ram() {
  static Ram r;
  return r;
}

void on_write(uint64_t gpa, uint64_t len) {
  if (gpa >= kRamSize || len > kRamSize - gpa) std::abort();
}

struct NullSink : pci::InterruptSink {
  void signal_msi(uint64_t, uint32_t) override {}
  void set_irq_line(uint32_t, bool) override {}
};

void queue_mode(Input& in) {
  const uint8_t flags = in.take<uint8_t>();
  const uint8_t log2 = in.take<uint8_t>();
  const uint16_t raw_size = in.take<uint16_t>();
  virtio::QueueState s;
  s.size = (flags & 4) ? raw_size : static_cast<uint16_t>(1u << (log2 % 10));
  s.ready = true;
  const uint32_t mask = (flags & 16) ? 0xffffffffu : 0xffffu;
  s.desc_addr = in.take<uint32_t>() & mask;
  s.driver_addr = in.take<uint32_t>() & mask;
  s.device_addr = in.take<uint32_t>() & mask;
  s.last_avail = in.take<uint16_t>();
  s.used_idx = in.take<uint16_t>();
  s.signalled_used = in.take<uint16_t>();
  s.signalled_valid = flags & 8;
  const uint32_t written_seed = in.take<uint32_t>();
  ram().fill(in);

  virtio::GuestDma dma(ram().memory, on_write);
  virtio::Queue q(512);
  std::string why;
  if (!q.restore(s, dma, why)) return;
  q.set_features(((flags & 1) ? virtio::kFRingIndirectDesc : 0) | ((flags & 2) ? virtio::kFRingEventIdx : 0));
  virtio::Chain c;
  uint8_t scratch[64];
  for (int i = 0; i < 64; ++i) {
    if (q.pop(c) != virtio::Queue::Pop::chain) break;
    for (const auto& b : c.readable()) {
      ram().check(b.host, b.len);
      if (b.len) scratch[0] ^= b.host[b.len - 1];  // the last byte is inside guest RAM too
    }
    for (const auto& b : c.writable()) ram().check(b.host, b.len);
    c.read(written_seed % 97, scratch);
    c.write(written_seed % 89, scratch);
    std::vector<iovec> iov;
    c.iovecs(true, written_seed % 13, written_seed, iov);
    for (const auto& v : iov) ram().check(static_cast<uint8_t*>(v.iov_base), v.iov_len);
    q.push_used(c, written_seed * static_cast<uint32_t>(i + 1));
    if (i % 3 == 0) q.should_notify();
  }
  q.should_notify();
}

void transport_mode(Input& in) {
  static NullSink sink;
  const uint8_t ops = in.take<uint8_t>() % 64;
  struct Op {
    uint8_t kind, size;
    uint16_t offset;
    uint64_t value;
  };
  Op seq[64];
  for (uint8_t i = 0; i < ops; ++i) seq[i] = Op{in.take<uint8_t>(), in.take<uint8_t>(), in.take<uint16_t>(), in.take<uint64_t>()};
  ram().fill(in);

  auto console = std::make_shared<virtio::VirtioConsole>("virtio-console0", 8);
  console->set_output([](std::span<const uint8_t> b) {
    if (!b.empty()) ram().check(b.data(), b.size());
  });
  virtio::VirtioPci t(console, virtio::GuestDma(ram().memory, on_write), sink);
  pci::Placement placement;
  placement.slot = 1;
  placement.bar_address[0] = 0xc0000000;
  placement.intx_gsi = 16;
  placement.set_intx = [](bool) {};
  t.plugged(placement);
  const uint8_t decode[] = {pci::kCommandMemory | pci::kCommandBusMaster, 0};
  t.config_write(pci::kCommand, decode);

  static const uint8_t sizes[] = {1, 2, 4, 8};
  for (uint8_t i = 0; i < ops; ++i) {
    const Op& op = seq[i];
    uint8_t buf[8];
    std::memcpy(buf, &op.value, 8);
    const size_t size = sizes[op.size % 4];
    switch (op.kind % 6) {
      case 0: t.bar_write(0, op.offset % virtio::bar::kSize, std::span<const uint8_t>(buf, size)); break;
      case 1: t.bar_read(0, op.offset % virtio::bar::kSize, std::span(buf, size)); break;
      case 2: {  // configuration space: accesses stay inside one dword, as the bus delivers them
        const uint32_t off = op.offset % 256, k = static_cast<uint32_t>(size > 4 ? 4 : size);
        t.config_write(off & ~(k - 1), std::span<const uint8_t>(buf, k));
        break;
      }
      case 3: {
        const uint32_t off = op.offset % 256, k = static_cast<uint32_t>(size > 4 ? 4 : size);
        t.config_read(off & ~(k - 1), std::span(buf, k));
        break;
      }
      case 4: console->inject_input(std::span<const uint8_t>(buf, size)); break;
      case 5: {  // a checkpoint in the middle: save, then restore into the same transport
        std::vector<uint8_t> state;
        persistence::Encoder enc(state);
        t.save(enc);
        persistence::Decoder dec(state);
        try {
          t.restore(dec, 1);
        } catch (const persistence::DecodeError&) {
          // Refusing a state with requests in flight (a broken queue mid-chain) is allowed.
        }
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nvhv::log::set_level(nvhv::log::Level::error);  // device faults are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  if (size && (data[0] & 0x80)) {
    in.take<uint8_t>();
    transport_mode(in);
  } else {
    queue_mode(in);
  }
  return 0;
}
