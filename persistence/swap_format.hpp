#pragma once
// On-disk layout of a swap file (docs/swap-format.md). Exposed for the swap engine, its tests and
// its fuzzer; callers should only need swap.hpp.
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace nvhv::persistence::swapfmt {

inline constexpr char kMagic[8] = {'N', 'V', 'H', 'V', 'S', 'W', 'A', 'P'};
inline constexpr char kTrailerMagic[8] = {'N', 'V', 'H', 'V', 'S', 'E', 'N', 'D'};
inline constexpr uint32_t kFormatVersion = 2;
// Version 1 files (no sparse chunks) are still read.
inline constexpr uint32_t kOldestReadableVersion = 1;

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kConsumedOffset = 4096;      // the consumed record has a page of its own
inline constexpr uint64_t kConsumedTargetOffset = 4096 + 256;
inline constexpr uint64_t kMaxTargetPath = kPage - 256;
inline constexpr uint64_t kIdentityOffset = 8192;
inline constexpr uint64_t kMaxIdentity = 64 * 1024;
inline constexpr uint64_t kMaxState = 64ull << 20;
inline constexpr uint64_t kMinChunk = 64 * 1024;
inline constexpr uint64_t kMaxChunk = 64ull << 20;
inline constexpr uint64_t kMaxRam = uint64_t{1} << 48;

// At offset 0; written once, before any chunk, and never changed.
struct Header {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;           // sizeof(Header)
  uint64_t swap_id;               // random, never 0: names this swap file in image records
  uint64_t created_realtime_ns;
  uint64_t ram_size;
  uint32_t vcpus;
  uint32_t chunk_size;            // power of two, kMinChunk..kMaxChunk
  uint64_t chunk_count;           // ceil(ram_size / chunk_size)
  uint32_t identity_length;
  int32_t compression_level;      // zstd level the chunks were compressed with (informative)
  uint64_t identity_hash;         // XXH3-64 of the identity text
  uint64_t identity_offset;       // kIdentityOffset
  uint64_t state_offset;          // next page after the identity text
  uint64_t state_length;          // the encoded checkpoint payload (image-format.md, "Payload")
  uint64_t state_checksum;        // XXH3-64 of it
  uint64_t saved_realtime_ns;     // when the checkpoint was taken
  uint64_t generation;            // its generation in the image it came from
  uint64_t base_swap_id;          // incremental: the swap file unchanged chunks were copied from (0: none)
  uint64_t data_offset;           // next page after the state: first chunk byte
  uint64_t reserved[14];          // zero
  uint64_t checksum;              // XXH3-64 of bytes 8..247
};
static_assert(sizeof(Header) == 256 && std::is_trivially_copyable_v<Header>);

// At kConsumedOffset; zero until a swap-in consumed the file. consumed_at_ns is stored last, with
// one aligned 8-byte write: it alone decides; the rest only explains where the VM went.
struct Consumed {
  uint64_t consumed_at_ns;        // 0: the file holds the VM; else when a swap-in took it
  uint64_t target_path_hash;      // XXH3-64 of the target's path text
  uint32_t target_length;         // bytes of path text at kConsumedTargetOffset
  uint32_t reserved;
};
static_assert(sizeof(Consumed) == 24);

// Sparse kinds (version 2) store the chunk's sparse form (swap_sparse.hpp): a bitmap of its
// non-zero pages, then those pages as they are (kSparseRaw) or as one zstd frame (kSparseZstd).
enum ChunkKind : uint32_t { kZero = 0, kRaw = 1, kZstd = 2, kSparseRaw = 3, kSparseZstd = 4 };
inline bool is_sparse(uint32_t kind) { return kind == kSparseRaw || kind == kSparseZstd; }

// The chunk table follows the chunk data; one entry per chunk of RAM, in RAM order. Stored chunks
// are contiguous from data_offset in table order, so every entry's offset is implied and checked.
struct ChunkEntry {
  uint32_t kind;                  // ChunkKind
  uint32_t stored_length;         // 0 for zero chunks; the raw size for raw ones
  uint64_t offset;                // file offset of the stored bytes
  uint64_t stored_checksum;       // XXH3-64 of the stored bytes (0 for zero chunks)
  uint64_t raw_checksum;          // XXH3-64 of the chunk's RAM contents (0 for zero chunks; of
                                  // its sparse form for sparse kinds)
};
static_assert(sizeof(ChunkEntry) == 32 && std::is_trivially_copyable_v<ChunkEntry>);

// The last 64 bytes of the file, written last: its presence says the file is complete.
struct Trailer {
  char magic[8];                  // kTrailerMagic
  uint64_t swap_id;               // as in the header
  uint64_t table_offset;
  uint64_t table_checksum;        // XXH3-64 of the chunk table
  uint64_t file_length;           // table_offset + table + sizeof(Trailer)
  uint64_t stored_bytes;          // sum of stored_length
  uint64_t header_checksum;       // the header's, binding the two
  uint64_t checksum;              // XXH3-64 of bytes 0..55
};
static_assert(sizeof(Trailer) == 64 && std::is_trivially_copyable_v<Trailer>);

uint64_t header_checksum(const Header& h);
uint64_t trailer_checksum(const Trailer& t);

inline uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace nvhv::persistence::swapfmt
