#pragma once
// Offsets and bits of the conventional PCI type-0 configuration header (PCI Local Bus 3.0,
// chapter 6) that nvhv's functions implement.
#include <cstdint>

namespace nvhv::pci {

inline constexpr uint32_t kConfigSpaceSize = 256;

inline constexpr uint32_t kVendorId = 0x00;
inline constexpr uint32_t kDeviceId = 0x02;
inline constexpr uint32_t kCommand = 0x04;
inline constexpr uint32_t kStatus = 0x06;
inline constexpr uint32_t kRevision = 0x08;
inline constexpr uint32_t kClassProgIf = 0x09;  // prog-if, subclass, class: 3 bytes
inline constexpr uint32_t kCacheLineSize = 0x0c;
inline constexpr uint32_t kLatencyTimer = 0x0d;
inline constexpr uint32_t kHeaderType = 0x0e;
inline constexpr uint32_t kBar0 = 0x10;
inline constexpr uint32_t kBarCount = 6;
inline constexpr uint32_t kSubsystemVendorId = 0x2c;
inline constexpr uint32_t kSubsystemId = 0x2e;
inline constexpr uint32_t kExpansionRom = 0x30;
inline constexpr uint32_t kCapabilityPointer = 0x34;
inline constexpr uint32_t kInterruptLine = 0x3c;
inline constexpr uint32_t kInterruptPin = 0x3d;
inline constexpr uint32_t kFirstCapability = 0x40;  // capabilities live after the header

inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandSerr = 1u << 8;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;

inline constexpr uint16_t kStatusInterrupt = 1u << 3;
inline constexpr uint16_t kStatusCapabilities = 1u << 4;

inline constexpr uint32_t kBarMem64 = 0x4;  // memory BAR, type 10b: 64-bit
inline constexpr uint32_t kBarPrefetchable = 0x8;

inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr uint8_t kCapIdVendor = 0x09;

// MSI-X capability: message control at +2 (table size - 1 in bits 0..10), table and PBA
// offset/BIR dwords at +4 and +8.
inline constexpr uint16_t kMsixEnable = 1u << 15;
inline constexpr uint16_t kMsixFunctionMask = 1u << 14;

}  // namespace nvhv::pci
