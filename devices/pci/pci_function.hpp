#pragma once
// One PCI function as the bus sees it: configuration accesses, its memory BARs, and where the
// bus placed it. nvhv assigns BAR addresses before boot (there is no firmware) and keeps the
// MMIO dispatch at those addresses; see PciBus.
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace nvhv::pci {

struct BarRequest {
  uint32_t index;  // a 64-bit memory BAR takes registers index and index+1
  uint64_t size;   // power of two
};

struct Placement {
  uint8_t slot = 0;                     // device number on bus 0
  std::array<uint64_t, 6> bar_address{};  // by BAR index; 0 when not requested
  uint32_t intx_gsi = 0;                // interrupt controller input INTA# is wired to
  std::function<void(bool)> set_intx;   // drives INTA#; the bus ORs functions sharing the line
};

class Function {
 public:
  virtual ~Function() = default;
  // offset + data.size() stays within one dword of the 256-byte space.
  virtual void config_read(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void config_write(uint32_t offset, std::span<const uint8_t> data) = 0;
  virtual std::vector<BarRequest> bar_requests() const { return {}; }
  // Guest accesses at `offset` within the BAR the bus placed at placement.bar_address[bar].
  virtual void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data);
  virtual void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data);
  // Called once, when the function is added to the bus and before the guest runs.
  virtual void plugged(const Placement& placement) = 0;
};

inline void Function::bar_read(uint32_t, uint64_t, std::span<uint8_t> data) {
  for (auto& b : data) b = 0xff;
}
inline void Function::bar_write(uint32_t, uint64_t, std::span<const uint8_t>) {}

}  // namespace nvhv::pci
