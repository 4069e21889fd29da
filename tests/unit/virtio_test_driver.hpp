#pragma once
// A fake guest for the virtio tests: anonymous RAM behind GuestMemory, the port and MMIO
// buses a vCPU would dispatch to, an interrupt sink that records what was sent, and a driver
// that enumerates PCI and programs a modern virtio device the way Linux's virtio_pci does.
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/io_bus.hpp"
#include "devices/pci/interrupt_sink.hpp"
#include "devices/pci/pci_bus.hpp"
#include "devices/virtio/blk.hpp"
#include "devices/virtio/console.hpp"
#include "devices/virtio/guest_dma.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "vmm/base/mapping.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace nvhv::test {

struct RecordingSink : pci::InterruptSink {
  struct Msi {
    uint64_t address;
    uint32_t data;
  };
  void signal_msi(uint64_t address, uint32_t data) override { msis.push_back({address, data}); }
  void set_irq_line(uint32_t gsi, bool level) override {
    lines[gsi] = level;
    line_changes.push_back({gsi, level});
  }
  size_t msis_with_data(uint32_t data) const {
    size_t n = 0;
    for (const auto& m : msis) n += m.data == data;
    return n;
  }
  std::vector<Msi> msis;
  std::map<uint32_t, bool> lines;
  std::vector<std::pair<uint32_t, bool>> line_changes;
};

// Guest RAM, buses and a PCI bus 0.
struct Guest {
  static constexpr uint64_t kRamSize = 64ull << 20;
  Guest();

  // Configuration mechanism #1, as a driver does it: address to 0xCF8, data at 0xCFC + (reg & 3).
  uint32_t cfg_read(uint8_t slot, uint32_t reg, size_t size);
  void cfg_write(uint8_t slot, uint32_t reg, size_t size, uint32_t value);
  uint64_t mmio_read(uint64_t address, size_t size);
  void mmio_write(uint64_t address, size_t size, uint64_t value);

  template <typename T>
  T peek(uint64_t gpa) const {
    T v;
    std::memcpy(&v, memory.checked_range(gpa, sizeof v), sizeof v);
    return v;
  }
  template <typename T>
  void poke(uint64_t gpa, T v) {
    memory.write_object(gpa, v);
  }
  // Zeroed guest memory from a bump allocator.
  uint64_t alloc(uint64_t size, uint64_t align = 16);
  bool dirty(uint64_t gpa, uint64_t len) const;  // was [gpa, gpa+len) reported as written by a device?

  Mapping ram;
  GuestMemory memory;
  std::vector<std::pair<uint64_t, uint64_t>> writes;  // ranges devices reported
  virtio::GuestDma dma;
  IoBus pio{"port I/O"};
  IoBus mmio{"MMIO"};
  RecordingSink sink;
  std::shared_ptr<pci::Bus> bus;
  uint64_t next_alloc = 1 << 20;
};

struct Seg {
  uint64_t gpa;
  uint32_t len;
  bool writable;
};

struct Vq {
  uint16_t index = 0;
  uint16_t size = 0;
  uint64_t desc = 0, avail = 0, used = 0;
  uint16_t avail_idx = 0;
  uint16_t last_used = 0;
  uint16_t next_desc = 0;
  // Like Linux with callbacks enabled, publish() sets used_event to the current used idx
  // ("interrupt me on the next completion"); tests of EVENT_IDX itself turn this off.
  bool auto_used_event = true;
};

struct UsedElem {
  uint32_t id;
  uint32_t len;
};

class Driver {
 public:
  Driver(Guest& guest, uint8_t slot);

  // PCI side: memory decode + bus master, capability discovery.
  void enable_pci();
  std::vector<uint8_t> capability_ids() const;
  std::optional<uint32_t> virtio_cap(uint8_t cfg_type) const;  // config offset of the first of that type

  // Common configuration through BAR0.
  uint64_t common(uint32_t offset, size_t size);
  void set_common(uint32_t offset, size_t size, uint64_t value);
  uint64_t device_features();
  uint8_t status() { return static_cast<uint8_t>(common(20, 1)); }
  void set_status(uint8_t s) { set_common(20, 1, s); }
  uint8_t read_isr() { return static_cast<uint8_t>(g_.mmio_read(bar_ + isr_off_, 1)); }
  uint64_t device_config(uint32_t offset, size_t size) { return g_.mmio_read(bar_ + device_off_ + offset, size); }

  // The virtio init sequence up to FEATURES_OK; returns whether FEATURES_OK stuck.
  bool negotiate(uint64_t features);
  Vq setup_queue(uint16_t index, uint16_t size = 0, uint16_t msix_vector = 0xffff);
  // MSI-X: enable, and point vector v at address 0xfee00000 with data 0x40 + v.
  void enable_msix(bool function_mask = false);
  void program_vector(uint16_t v, bool masked = false);
  void driver_ok() { set_status(status() | 4); }
  // The whole sequence: negotiate, one queue per entry (vector i), MSI-X, DRIVER_OK.
  std::vector<Vq> start(uint64_t features, size_t queues, bool msix = true);

  uint16_t add_chain(Vq& vq, const std::vector<Seg>& segs, bool publish = true);
  uint16_t add_indirect(Vq& vq, const std::vector<Seg>& segs);
  void publish(Vq& vq, uint16_t head);
  void notify(const Vq& vq);
  std::optional<UsedElem> take_used(Vq& vq);
  uint16_t used_idx(const Vq& vq) const { return g_.peek<uint16_t>(vq.used + 2); }
  void write_desc(const Vq& vq, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);

  uint8_t slot() const { return slot_; }
  uint64_t bar() const { return bar_; }
  uint32_t msix_cap() const { return msix_cap_; }

 private:
  Guest& g_;
  uint8_t slot_;
  uint64_t bar_ = 0;
  uint32_t common_off_ = 0, notify_off_ = 0, notify_mult_ = 0, isr_off_ = 0, device_off_ = 0;
  uint32_t msix_cap_ = 0;
  uint64_t msix_table_ = 0;
};

// A scratch disk image under $TMPDIR, removed on destruction; byte i holds i * 7 % 251.
struct TempImage {
  explicit TempImage(uint64_t bytes);
  ~TempImage();
  TempImage(const TempImage&) = delete;
  TempImage& operator=(const TempImage&) = delete;
  std::vector<uint8_t> read(uint64_t offset, uint64_t len) const;
  static uint8_t pattern(uint64_t i) { return static_cast<uint8_t>(i * 7 % 251); }
  std::string path;
};

// A guest with a virtio-blk (slot 1) and a virtio-console (slot 2) on its PCI bus.
struct Rig {
  explicit Rig(bool readonly = false, const std::string& image_path = "");
  static constexpr uint64_t kImageBytes = 1 << 20;
  std::unique_ptr<TempImage> own_image;  // when no path was given
  std::string image;
  Guest g;
  std::shared_ptr<virtio::VirtioBlk> blk;
  std::shared_ptr<virtio::VirtioPci> blk_pci;
  std::shared_ptr<virtio::VirtioConsole> con;
  std::shared_ptr<virtio::VirtioPci> con_pci;
  uint8_t blk_slot = 0, con_slot = 0;
  std::string output;  // console output
};

}  // namespace nvhv::test
