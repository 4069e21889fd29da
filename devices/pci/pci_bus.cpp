#include "devices/pci/pci_bus.hpp"

#include <fmt/core.h>

#include <cstring>
#include <stdexcept>

namespace nvhv::pci {
namespace {

constexpr uint32_t kEnableBit = 1u << 31;
constexpr uint32_t kExtendedRegisterBits = 0x0f000000;  // AMD extended config (offsets >= 256)

// 00:00.0: identifies the bus as PCI to Linux's conf1 sanity check (class host bridge,
// vendor Intel). No BARs, no interrupt; only the usual writable header fields.
class HostBridge : public Function {
 public:
  HostBridge() : config_(Identity{kHostBridgeVendor, kHostBridgeDevice, 0x060000, 0, kHostBridgeVendor, kHostBridgeDevice, 0}) {}
  void config_read(uint32_t offset, std::span<uint8_t> data) override {
    std::lock_guard lock(mu_);
    config_.read(offset, data);
  }
  void config_write(uint32_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(mu_);
    config_.write(offset, data);
  }
  void plugged(const Placement&) override {}
  void save(persistence::Encoder& out) const {
    std::lock_guard lock(mu_);
    config_.save(out);
  }
  void restore(persistence::Decoder& in) {
    std::lock_guard lock(mu_);
    config_.restore(in);
  }

 private:
  mutable std::mutex mu_;
  ConfigSpace config_;
};

// Forwards one BAR's MMIO range to its function.
class BarWindow : public BusDevice {
 public:
  BarWindow(std::shared_ptr<Function> fn, uint32_t bar) : fn_(std::move(fn)), bar_(bar) {}
  void read(uint64_t offset, std::span<uint8_t> data) override { fn_->bar_read(bar_, offset, data); }
  void write(uint64_t offset, std::span<const uint8_t> data) override { fn_->bar_write(bar_, offset, data); }

 private:
  std::shared_ptr<Function> fn_;
  uint32_t bar_;
};

}  // namespace

std::shared_ptr<Bus> Bus::create(IoBus& pio, IoBus& mmio, InterruptSink& irq, MmioWindow window) {
  auto bus = std::make_shared<Bus>(mmio, irq, window);
  pio.add(kConfigAddressPort, kConfigPortsLength, bus);
  return bus;
}

Bus::Bus(IoBus& mmio, InterruptSink& irq, MmioWindow window)
    : mmio_(mmio), irq_(irq), window_(window), next_mmio_(window.base), slots_(kSlots) {
  if (window.size == 0 || window.base + window.size < window.base) throw std::invalid_argument("PCI MMIO window is empty or wraps");
  slots_[0] = std::make_shared<HostBridge>();
}

uint8_t Bus::add(std::shared_ptr<Function> fn) {
  uint8_t slot = 1;
  while (slot < kSlots && slots_[slot]) ++slot;
  if (slot == kSlots) throw std::length_error("PCI bus 0 is full (31 functions)");

  Placement placement;
  placement.slot = slot;
  uint64_t next = next_mmio_;
  const auto requests = fn->bar_requests();
  for (const BarRequest& r : requests) {
    if (r.index >= placement.bar_address.size() || r.size == 0 || (r.size & (r.size - 1)) != 0)
      throw std::invalid_argument(fmt::format("PCI slot {}: bad BAR{} request of {:#x} bytes", slot, r.index, r.size));
    const uint64_t base = (next + r.size - 1) & ~(r.size - 1);  // BARs are naturally aligned
    if (base < next || base - window_.base > window_.size || r.size > window_.size - (base - window_.base))
      throw std::length_error(fmt::format("PCI MMIO window {:#x}+{:#x} has no room for a {:#x}-byte BAR", window_.base, window_.size, r.size));
    placement.bar_address[r.index] = base;
    next = base + r.size;
  }
  placement.intx_gsi = kFirstIntxGsi + (slot - 1u) % kIntxGsiCount;
  const uint32_t gsi = placement.intx_gsi;
  placement.set_intx = [this, slot, gsi](bool level) { set_intx(slot, gsi, level); };

  // Register everything before committing, so a failed add leaves the bus unchanged except
  // for ranges IoBus already holds (add() only runs at machine construction, which then fails).
  for (const BarRequest& r : requests) mmio_.add(placement.bar_address[r.index], r.size, std::make_shared<BarWindow>(fn, r.index));
  fn->plugged(placement);
  next_mmio_ = next;
  slots_[slot] = std::move(fn);
  routes_.push_back({slot, 1, gsi});
  return slot;
}

std::vector<IntxRoute> Bus::intx_routes() const { return routes_; }

void Bus::set_intx(uint8_t slot, uint32_t gsi, bool level) {
  std::lock_guard lock(intx_mu_);
  uint32_t& mask = intx_asserted_[gsi - kFirstIntxGsi];
  const bool before = mask != 0;
  mask = level ? (mask | (1u << slot)) : (mask & ~(1u << slot));
  const bool after = mask != 0;
  if (before != after) irq_.set_irq_line(gsi, after);
}

Function* Bus::target(uint32_t address) const {
  if (!(address & kEnableBit) || (address & kExtendedRegisterBits)) return nullptr;
  const uint32_t bus = (address >> 16) & 0xff;
  const uint32_t device = (address >> 11) & 0x1f;
  const uint32_t function = (address >> 8) & 0x7;
  if (bus != 0 || function != 0) return nullptr;  // single-function devices on bus 0 only
  return slots_[device].get();
}

void Bus::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset == 1 && data.size() == 1 && reset_control_) {
    reset_control_->read(0, data);
    return;
  }
  uint32_t address;
  {
    std::lock_guard lock(mu_);
    address = address_;
  }
  if (offset == 0 && data.size() == 4) {
    std::memcpy(data.data(), &address, 4);
    return;
  }
  std::memset(data.data(), 0xff, data.size());
  if (offset < 4) return;  // only dword accesses reach the address latch
  Function* fn = target(address);
  if (!fn) return;  // no device: the host bridge aborts the cycle and software sees all-ones
  fn->config_read((address & 0xfc) + static_cast<uint32_t>(offset - 4), data);
}

void Bus::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 1 && data.size() == 1 && reset_control_) {
    reset_control_->write(0, data);
    return;
  }
  if (offset == 0 && data.size() == 4) {
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    std::lock_guard lock(mu_);
    address_ = v & ~3u;  // the low two bits read back as 0
    return;
  }
  if (offset < 4) return;  // e.g. Linux's byte write to 0xCFB while probing for mechanism #1
  uint32_t address;
  {
    std::lock_guard lock(mu_);
    address = address_;
  }
  Function* fn = target(address);
  if (fn) fn->config_write((address & 0xfc) + static_cast<uint32_t>(offset - 4), data);
}

void Bus::save(persistence::Encoder& out) const {
  {
    std::lock_guard lock(mu_);
    out.u32(address_);
  }
  static_cast<const HostBridge&>(*slots_[0]).save(out);
}

void Bus::restore(persistence::Decoder& in, uint32_t) {
  const uint32_t address = in.u32("PCI config address latch");
  static_cast<HostBridge&>(*slots_[0]).restore(in);
  std::lock_guard lock(mu_);
  address_ = address;
}

}  // namespace nvhv::pci
