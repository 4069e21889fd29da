#pragma once
// Constants from the virtio 1.x specification that nvhv's devices use.
#include <cstdint>

namespace nvhv::virtio {

// Feature bits common to all devices (spec 6, "Reserved Feature Bits").
inline constexpr uint64_t kFRingIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFRingEventIdx = 1ull << 29;
inline constexpr uint64_t kFVersion1 = 1ull << 32;

// Device status (spec 2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 64;
inline constexpr uint8_t kStatusFailed = 128;

// Split virtqueue descriptor flags and ring flags (spec 2.7).
inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;
inline constexpr uint16_t kAvailFNoInterrupt = 1;
inline constexpr uint16_t kUsedFNoNotify = 1;
inline constexpr uint32_t kDescSize = 16;
inline constexpr uint16_t kMaxQueueSize = 32768;

// Device types (spec 5).
inline constexpr uint32_t kIdBlock = 2;
inline constexpr uint32_t kIdConsole = 3;

// PCI transport (spec 4.1).
inline constexpr uint16_t kPciVendor = 0x1af4;
inline constexpr uint16_t kPciDeviceBase = 0x1040;  // + device type for modern devices
inline constexpr uint16_t kNoVector = 0xffff;
inline constexpr uint8_t kPciCapCommon = 1;
inline constexpr uint8_t kPciCapNotify = 2;
inline constexpr uint8_t kPciCapIsr = 3;
inline constexpr uint8_t kPciCapDevice = 4;
inline constexpr uint8_t kPciCapPciCfg = 5;
inline constexpr uint8_t kIsrQueue = 1;
inline constexpr uint8_t kIsrConfig = 2;

}  // namespace nvhv::virtio
