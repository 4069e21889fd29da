#pragma once
// On-media layout of a VM image (docs/image-format.md). Exposed for the image code, its tests
// and fuzzers; the VMM itself should only need image.hpp.
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace nvhv::persistence::layout {

inline constexpr char kMagic[8] = {'N', 'V', 'H', 'V', 'I', 'M', 'G', '\0'};
inline constexpr uint32_t kFormatVersion = 1;

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kHeaderRegion = 64 * kKiB;      // header + identity text
inline constexpr uint64_t kIdentityOffset = 256;          // identity text follows the fixed header
inline constexpr uint64_t kMaxIdentity = kHeaderRegion - kIdentityOffset;
inline constexpr uint64_t kSlotHeaderRegion = 4 * kKiB;   // the payload starts on the next page
inline constexpr uint64_t kRamAlignment = 2 * kMiB;       // huge pages for the guest, devdax alignment
inline constexpr uint64_t kSlotGranule = 64 * kKiB;
inline constexpr uint64_t kSlotBase = 256 * kKiB;         // devices and VM-wide state
inline constexpr uint64_t kSlotPerVcpu = 64 * kKiB;       // ~15 KiB today (XSAVE, CPUID, MSRs, LAPIC)
inline constexpr uint32_t kMaxVcpus = 1024;

// At offset 0. All integers little-endian.
struct ImageHeader {
  char magic[8];                 // written last when formatting
  uint32_t format_version;
  uint32_t header_size;          // sizeof(ImageHeader)
  uint64_t header_region;        // kHeaderRegion
  uint64_t slot_offset[2];       // slot A, slot B
  uint64_t slot_size;            // including the slot header region
  uint64_t ram_offset;           // multiple of kRamAlignment
  uint64_t ram_size;
  uint32_t vcpus;
  uint32_t identity_length;      // bytes of identity text at kIdentityOffset
  uint64_t identity_hash;        // XXH3-64 of the identity text
  uint64_t created_realtime_ns;
  uint64_t reserved[8];          // zero
  uint64_t checksum;             // header_checksum(): everything after magic, plus identity text
};
static_assert(sizeof(ImageHeader) == 160 && sizeof(ImageHeader) <= kIdentityOffset);
static_assert(std::is_trivially_copyable_v<ImageHeader>);

// At the start of each slot; 8-byte fields so `generation` and `consumed_at_ns` can be
// stored atomically with respect to power failure.
struct SlotHeader {
  uint64_t generation;           // the commit point: stored last; 0 = never committed
  uint64_t payload_length;
  uint64_t payload_checksum;     // XXH3-64 of the payload
  uint64_t saved_realtime_ns;    // copied from the state, for operator messages
  uint32_t slot_index;           // 0 = A, 1 = B: a slot copied to the other offset fails its checksum
  uint32_t reserved;
  uint64_t checksum;             // slot_checksum(): the fields above
  uint64_t consumed_at_ns;       // 0 = committed; else CLOCK_REALTIME of the resume that consumed it
  uint64_t committed_at_ns;      // CLOCK_REALTIME just after the commit; informative, may be 0
};
static_assert(sizeof(SlotHeader) == 64);

// Bytes 160..199 of the header area, between the checksummed header and the identity text: where
// the VM of this image is in a swap to or from a swap file (docs/swap-format.md). It is outside
// the header checksum so that every change is one aligned 8-byte store, with `state` stored last;
// images that were never swapped hold zeros here, which reads as "in use, no origin".
inline constexpr uint64_t kSwapRecordOffset = 160;
inline constexpr uint64_t kSwapInUse = 0;     // the image holds the VM
inline constexpr uint64_t kSwapOutgoing = 1;  // a swap-out to peer_id is under way: not resumable
inline constexpr uint64_t kSwapReleased = 2;  // the VM lives in swap file peer_id: the image holds nothing
inline constexpr uint64_t kSwapIncoming = 3;  // a swap-in from peer_id is under way: not resumable

struct SwapRecord {
  uint64_t state;                // one of kSwap*, stored last
  uint64_t peer_id;              // outgoing/released: the swap file written; incoming: the one restored
  uint64_t peer_path_hash;       // XXH3-64 of that swap file's absolute path, to recognise a rerun
  uint64_t origin_id;            // in use: the swap file this image was last swapped in from (0: none)
  uint64_t changed_at_ns;        // CLOCK_REALTIME of the last change, for messages
};
static_assert(sizeof(ImageHeader) <= kSwapRecordOffset && kSwapRecordOffset + sizeof(SwapRecord) <= kIdentityOffset);

uint64_t header_checksum(const ImageHeader& h, const uint8_t* identity_text);
uint64_t slot_checksum(const SlotHeader& s);

}  // namespace nvhv::persistence::layout
