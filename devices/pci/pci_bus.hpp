#pragma once
// PCI bus 0 behind configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data), with a
// host bridge at 00:00.0 so Linux's conf1 sanity check accepts the bus.
//
// There is no firmware: nvhv places every BAR itself when a function is added, from an MMIO
// window in the PCI hole, and registers the BAR's MMIO range on the MMIO IoBus right away
// (that bus takes no registrations once vCPUs run). Linux keeps firmware-assigned BARs unless
// booted with pci=realloc, so the guest never moves them. If it does, the BAR register holds
// the new value but the function only answers while the register equals the address nvhv
// placed it at (and memory decode is on): a moved BAR goes dark instead of aliasing.
//
// INTA# of slot s is wired to GSI 16 + (s-1) % 8 (IOAPIC pins above the ISA IRQs, so no
// edge-triggered ISA device shares them); intx_routes() lists them for the MP table.
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/io_bus.hpp"
#include "devices/pci/config_space.hpp"
#include "devices/pci/interrupt_sink.hpp"
#include "devices/pci/pci_function.hpp"
#include "persistence/snapshottable.hpp"
#include "vmm/x86/layout.hpp"

namespace nvhv::pci {

struct MmioWindow {
  uint64_t base;
  uint64_t size;
};
// The PCI hole from its start up to the IOAPIC: nothing else nvhv maps lives there.
inline constexpr MmioWindow kDefaultMmioWindow{layout::kPciHoleStart, layout::kIoapicBase - layout::kPciHoleStart};
inline constexpr uint64_t kConfigAddressPort = 0xcf8;
inline constexpr uint64_t kConfigPortsLength = 8;  // 0xCF8-0xCFF
inline constexpr uint32_t kFirstIntxGsi = 16;
inline constexpr uint32_t kIntxGsiCount = 8;
inline constexpr uint16_t kHostBridgeVendor = 0x8086;
// An Intel ID no Linux driver binds to (Firecracker's choice): 0x29c0 would pull in
// intel-agp, which probes for an integrated GPU that is not there.
inline constexpr uint16_t kHostBridgeDevice = 0x0d57;

// One INTx wiring for the MP table: source bus 0, source IRQ (slot << 2) | (pin - 1).
struct IntxRoute {
  uint8_t slot;
  uint8_t pin;  // 1 = INTA#
  uint32_t gsi;
};

class Bus : public BusDevice, public persistence::Snapshottable {
 public:
  // Registers the configuration ports on `pio`; BARs of added functions go on `mmio`.
  static std::shared_ptr<Bus> create(IoBus& pio, IoBus& mmio, InterruptSink& irq, MmioWindow window = kDefaultMmioWindow);
  Bus(IoBus& mmio, InterruptSink& irq, MmioWindow window);

  // Puts `fn` at the next free device number, places its BARs and wires INTA#; returns the
  // slot. Only before the vCPUs start. Throws when the bus or the MMIO window is full.
  uint8_t add(std::shared_ptr<Function> fn);
  std::vector<IntxRoute> intx_routes() const;
  // Byte accesses to 0xCF9 are the chipset's reset control register, not configuration
  // cycles: they go to `device` (at offset 0).
  void set_reset_control(std::shared_ptr<BusDevice> device) { reset_control_ = std::move(device); }

  // The configuration ports (offset 0 = 0xCF8).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The address latch and the host bridge's configuration space; functions save themselves.
  std::string snapshot_id() const override { return "pci0"; }
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;

 private:
  std::shared_ptr<BusDevice> reset_control_;
  static constexpr uint32_t kSlots = 32;
  Function* target(uint32_t address) const;
  void set_intx(uint8_t slot, uint32_t gsi, bool level);

  IoBus& mmio_;
  InterruptSink& irq_;
  MmioWindow window_;
  uint64_t next_mmio_;
  std::vector<std::shared_ptr<Function>> slots_;  // index = device number
  std::vector<IntxRoute> routes_;
  mutable std::mutex mu_;  // the address latch
  uint32_t address_ = 0;
  std::mutex intx_mu_;
  std::array<uint32_t, kIntxGsiCount> intx_asserted_{};  // per GSI: bit per slot driving it high
};

}  // namespace nvhv::pci
