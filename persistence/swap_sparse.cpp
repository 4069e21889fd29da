#include "persistence/swap_sparse.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "persistence/swap_format.hpp"
#include "persistence/swap_hash.hpp"
#include "persistence/swap_internal.hpp"

namespace nvhv::persistence::swapsparse {
namespace {

using swapfmt::kPage;

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// A hash state per thread, made once: hashing runs once per chunk on the pool's threads.
XXH3_state_t* started_state(const PageMap& map) {
  thread_local std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state.get());
  XXH3_64bits_update(state.get(), map.words.data(), bitmap_bytes(map.pages));
  return state.get();
}

}  // namespace

uint64_t PageMap::sparse_bytes() const { return bitmap_bytes(pages) + nonzero * kPage; }

void scan(const uint8_t* raw, uint64_t n, PageMap& map) {
  const PageRun all{0, n / kPage};
  scan(raw, n, {&all, 1}, map);
}

void scan(const uint8_t* raw, uint64_t n, std::span<const PageRun> runs, PageMap& map) {
  map.pages = n / kPage;
  map.words.assign(bitmap_bytes(map.pages) / 8, 0);
  map.nonzero = 0;
  for (const PageRun& run : runs)
    for (uint64_t p = run.first; p < std::min(map.pages, run.first + run.count); ++p) {
      if (swapimpl::is_zero(raw + p * kPage, kPage)) continue;
      map.words[p / 64] |= uint64_t{1} << (p % 64);
      ++map.nonzero;
    }
}

uint64_t checksum(const uint8_t* raw, const PageMap& map) {
  XXH3_state_t* state = started_state(map);
  map.for_each_run(
      [&](uint64_t first, uint64_t count) { XXH3_64bits_update(state, raw + first * kPage, count * kPage); });
  return XXH3_64bits_digest(state);
}

uint64_t checksum_of_pages(const PageMap& map, const uint8_t* body) {
  XXH3_state_t* state = started_state(map);
  XXH3_64bits_update(state, body, map.nonzero * kPage);
  return XXH3_64bits_digest(state);
}

void gather(const uint8_t* raw, const PageMap& map, uint8_t* out) {
  std::memcpy(out, map.words.data(), bitmap_bytes(map.pages));
  out += bitmap_bytes(map.pages);
  map.for_each_run([&](uint64_t first, uint64_t count) {
    std::memcpy(out, raw + first * kPage, count * kPage);
    out += count * kPage;
  });
}

bool parse_bitmap(const uint8_t* stored, uint64_t stored_length, uint64_t pages, PageMap& map) {
  const uint64_t bytes = bitmap_bytes(pages);
  if (pages == 0 || stored_length < bytes) return false;
  map.pages = pages;
  map.words.resize(bytes / 8);
  std::memcpy(map.words.data(), stored, bytes);
  if (pages % 64 && map.words.back() >> (pages % 64)) return false;
  map.nonzero = 0;
  for (uint64_t w : map.words) map.nonzero += static_cast<uint64_t>(std::popcount(w));
  return map.nonzero > 0;
}

void scatter(const uint8_t* body, const PageMap& map, uint8_t* chunk, bool zero_fill) {
  uint64_t next = 0;  // first page not yet written
  map.for_each_run([&](uint64_t first, uint64_t count) {
    if (zero_fill && first > next) std::memset(chunk + next * kPage, 0, (first - next) * kPage);
    std::memcpy(chunk + first * kPage, body, count * kPage);
    body += count * kPage;
    next = first + count;
  });
  if (zero_fill && map.pages > next) std::memset(chunk + next * kPage, 0, (map.pages - next) * kPage);
}

}  // namespace nvhv::persistence::swapsparse
