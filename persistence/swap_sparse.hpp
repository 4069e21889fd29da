#pragma once
// The sparse form of a swap chunk (docs/swap-format.md, "Sparse chunks"): a bitmap of the chunk's
// non-zero pages followed by those pages in RAM order. A guest that used part of its memory leaves
// most chunks partly zero; in this form only the pages it used are hashed, compressed and stored.
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

namespace nvhv::persistence::swapsparse {

// One bit per page (bit p % 64 of word p / 64, little-endian words), in whole 64-bit words.
inline uint64_t bitmap_bytes(uint64_t pages) { return (pages + 63) / 64 * 8; }

// Which pages of a chunk hold a non-zero byte.
struct PageMap {
  std::vector<uint64_t> words;
  uint64_t pages = 0;
  uint64_t nonzero = 0;

  bool test(uint64_t p) const { return (words[p / 64] >> (p % 64)) & 1; }
  uint64_t sparse_bytes() const;  // bitmap plus the non-zero pages

  // f(first_page, page_count) for every run of consecutive non-zero pages, in order.
  template <class F>
  void for_each_run(F&& f) const {
    uint64_t p = 0;
    while (p < pages) {
      if (!test(p)) {
        ++p;
        continue;
      }
      uint64_t end = p + 1;
      while (end < pages && test(end)) ++end;
      f(p, end - p);
      p = end;
    }
  }
};

// Pages [first, first + count) of a chunk.
struct PageRun {
  uint64_t first = 0;
  uint64_t count = 0;
  bool operator==(const PageRun&) const = default;
};

// Scans `n` bytes of RAM (a multiple of the 4 KiB page) into `map`, reusing its storage.
void scan(const uint8_t* raw, uint64_t n, PageMap& map);

// The same, reading only the pages in `runs` (in order, not overlapping): the others are known to
// be zero (holes in the backing file) and are never touched.
void scan(const uint8_t* raw, uint64_t n, std::span<const PageRun> runs, PageMap& map);

// XXH3-64 of the chunk's sparse form, computed from RAM without building the form.
uint64_t checksum(const uint8_t* raw, const PageMap& map);

// XXH3-64 of a sparse form held as its bitmap (in `map`) and its contiguous non-zero pages.
uint64_t checksum_of_pages(const PageMap& map, const uint8_t* body);

// Writes the sparse form of `raw` to `out` (map.sparse_bytes() bytes).
void gather(const uint8_t* raw, const PageMap& map, uint8_t* out);

// Reads the bitmap at the start of `stored` for a chunk of `pages` pages into `map`. False when
// the bytes cannot be a sparse chunk's: too short, a bit set past the chunk, or no page at all.
bool parse_bitmap(const uint8_t* stored, uint64_t stored_length, uint64_t pages, PageMap& map);

// Copies the non-zero pages in `body` to their places in `chunk`; with zero_fill, the other pages
// of the chunk are zeroed (a target not known to read as zero).
void scatter(const uint8_t* body, const PageMap& map, uint8_t* chunk, bool zero_fill);

}  // namespace nvhv::persistence::swapsparse
