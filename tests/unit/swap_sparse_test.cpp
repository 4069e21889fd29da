// Sparse swap chunks (format version 2): partly-zero chunks store a page bitmap and their non-zero
// pages only; they restore exactly into every kind of target, take part in incremental swap-outs,
// and a bitmap that does not fit its chunk is refused even when every checksum matches.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <random>

#include "persistence/swap.hpp"
#include "persistence/swap_format.hpp"
#include "persistence/swap_hash.hpp"
#include "persistence/swap_image.hpp"
#include "persistence/swap_sparse.hpp"
#include "tests/unit/persistence_test_util.hpp"
#include "tests/unit/swap_test_util.hpp"

namespace nvhv::persistence {
namespace {

using nlohmann::json;
using test::contains;
using test::file_hash;
using test::refusal_of;
using test::small_chunks;
namespace sparse = swapsparse;

constexpr uint64_t kPage = 4096;
constexpr uint32_t kChunk = test::kSmallChunk;
constexpr uint64_t kRam = 2ull << 20;
constexpr uint64_t kChunks = kRam / kChunk;
constexpr uint64_t kPagesPerChunk = kChunk / kPage;
constexpr uint32_t kVcpus = 2;

json identity() { return {{"vcpus", kVcpus}, {"memory_mib", 2}, {"machine", "test"}}; }

void fill_random(uint8_t* p, uint64_t n, std::mt19937_64& rng) {
  for (uint64_t i = 0; i < n; i += 8) {
    const uint64_t v = rng() | 1;  // never an all-zero page
    std::memcpy(p + i, &v, 8);
  }
}

void fill_text(uint8_t* p, uint64_t n, std::mt19937_64& rng) {
  for (uint64_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>("sparse guest page "[(i + rng() % 2) % 18]);
}

// Chunk c: c % 4 == 0 random with every other page zero (sparse, stored raw); 1 text with its
// first and last pages zero (sparse, compressed); 2 random on every page (raw); 3 zero.
std::vector<uint8_t> partly_zero_ram(uint64_t seed) {
  std::vector<uint8_t> ram(kRam, 0);
  std::mt19937_64 rng(seed);
  for (uint64_t c = 0; c < kChunks; ++c)
    for (uint64_t p = 0; p < kPagesPerChunk; ++p) {
      uint8_t* page = ram.data() + c * kChunk + p * kPage;
      if (c % 4 == 0 && p % 2 == 1) fill_random(page, kPage, rng);
      if (c % 4 == 1 && p != 0 && p != kPagesPerChunk - 1) fill_text(page, kPage, rng);
      if (c % 4 == 2) fill_random(page, kPage, rng);
    }
  return ram;
}

// ---- the sparse form ----

TEST(SparseFormTest, GatherScatterAndBothChecksumsAgree) {
  std::vector<uint8_t> chunk = partly_zero_ram(1);
  chunk.resize(kChunk);  // chunk 0: odd pages non-zero
  sparse::PageMap map;
  sparse::scan(chunk.data(), kChunk, map);
  EXPECT_EQ(map.pages, kPagesPerChunk);
  EXPECT_EQ(map.nonzero, kPagesPerChunk / 2);
  EXPECT_EQ(map.words[0], 0xaaaau);
  EXPECT_EQ(map.sparse_bytes(), 8 + kChunk / 2);
  std::vector<uint64_t> runs;
  map.for_each_run([&](uint64_t first, uint64_t count) { runs.push_back(first * 100 + count); });
  EXPECT_EQ(runs, (std::vector<uint64_t>{101, 301, 501, 701, 901, 1101, 1301, 1501}));

  std::vector<uint8_t> form(map.sparse_bytes());
  sparse::gather(chunk.data(), map, form.data());
  const uint64_t whole = XXH3_64bits(form.data(), form.size());
  EXPECT_EQ(sparse::checksum(chunk.data(), map), whole);
  EXPECT_EQ(sparse::checksum_of_pages(map, form.data() + 8), whole);

  sparse::PageMap parsed;
  ASSERT_TRUE(sparse::parse_bitmap(form.data(), form.size(), kPagesPerChunk, parsed));
  EXPECT_EQ(parsed.nonzero, map.nonzero);
  std::vector<uint8_t> back(kChunk, 0xee);
  sparse::scatter(form.data() + 8, parsed, back.data(), true);
  EXPECT_TRUE(back == chunk);
}

TEST(SparseFormTest, BitmapsThatCannotDescribeTheChunkAreRejected) {
  sparse::PageMap map;
  uint64_t word = 0x1;
  EXPECT_TRUE(sparse::parse_bitmap(reinterpret_cast<const uint8_t*>(&word), 8, 16, map));
  EXPECT_FALSE(sparse::parse_bitmap(reinterpret_cast<const uint8_t*>(&word), 7, 16, map)) << "shorter than a word";
  word = uint64_t{1} << 16;
  EXPECT_FALSE(sparse::parse_bitmap(reinterpret_cast<const uint8_t*>(&word), 8, 16, map)) << "a page past the chunk";
  word = 0;
  EXPECT_FALSE(sparse::parse_bitmap(reinterpret_cast<const uint8_t*>(&word), 8, 16, map)) << "no page at all";
  const uint64_t full[2] = {~uint64_t{0}, ~uint64_t{0}};
  EXPECT_TRUE(sparse::parse_bitmap(reinterpret_cast<const uint8_t*>(full), 16, 128, map));
  EXPECT_EQ(map.nonzero, 128u);
}

// ---- swap files with sparse chunks ----

class SparseSwapFileTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path = dir.file("vm.swap");
  std::vector<uint8_t> ram = partly_zero_ram(2);
  std::vector<uint8_t> state = encoded_state();

  static std::vector<uint8_t> encoded_state() {
    std::vector<uint8_t> out;
    Encoder enc(out);
    encode(enc, test::sample_machine(kVcpus, 1));
    return out;
  }

  SwapFigures write(const std::vector<uint8_t>& r, const SwapBase* base = nullptr, const std::string& to = "") {
    SwapSource s;
    s.ram = r;
    s.state = state;
    s.identity = identity();
    s.vcpus = kVcpus;
    s.generation = 3;
    const uint64_t id = 0x5150 + r[kChunk + 2 * kPage];
    PendingSwapFile p = write_swap_file(to.empty() ? path : to, s, id, small_chunks(), base);
    p.publish();
    return p.figures();
  }
  std::vector<uint8_t> restored_into_memory(const SwapFile& f) {
    Backing target = Backing::anonymous(kRam + kChunk);
    std::memset(target.data(), 0xee, target.size());  // not known zero: zero pages must be written
    f.restore(target, kChunk, false, small_chunks());
    return {target.data() + kChunk, target.data() + kChunk + kRam};
  }

  swapfmt::Header header() {
    swapfmt::Header h{};
    EXPECT_TRUE(pread_at(&h, sizeof h, 0));
    return h;
  }
  swapfmt::Trailer trailer() {
    swapfmt::Trailer t{};
    EXPECT_TRUE(pread_at(&t, sizeof t, std::filesystem::file_size(path) - sizeof t));
    return t;
  }
  bool pread_at(void* p, size_t n, uint64_t offset) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    const bool ok = fd >= 0 && ::pread(fd, p, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n);
    if (fd >= 0) ::close(fd);
    return ok;
  }
  void pwrite_at(const void* p, size_t n, uint64_t offset) {
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, p, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
    ::close(fd);
  }
  // Rewrites the header (its checksum recomputed) and the trailer that binds it, as a writer that
  // meant it would: only the reader's own checks can then refuse the file.
  void rewrite_header(const std::function<void(swapfmt::Header&)>& change) {
    swapfmt::Header h = header();
    change(h);
    h.checksum = swapfmt::header_checksum(h);
    pwrite_at(&h, sizeof h, 0);
    swapfmt::Trailer t = trailer();
    t.header_checksum = h.checksum;
    t.checksum = swapfmt::trailer_checksum(t);
    pwrite_at(&t, sizeof t, std::filesystem::file_size(path) - sizeof t);
  }
  // Replaces chunk i's stored bytes (same length) and makes every checksum over them match.
  void rewrite_chunk(size_t i, const std::function<void(std::vector<uint8_t>&)>& change) {
    swapfmt::Trailer t = trailer();
    std::vector<swapfmt::ChunkEntry> table(kChunks);
    ASSERT_TRUE(pread_at(table.data(), table.size() * sizeof table[0], t.table_offset));
    swapfmt::ChunkEntry& e = table[i];
    std::vector<uint8_t> stored(e.stored_length);
    ASSERT_TRUE(pread_at(stored.data(), stored.size(), e.offset));
    change(stored);
    ASSERT_EQ(stored.size(), e.stored_length);
    pwrite_at(stored.data(), stored.size(), e.offset);
    e.stored_checksum = e.raw_checksum = XXH3_64bits(stored.data(), stored.size());
    pwrite_at(table.data(), table.size() * sizeof table[0], t.table_offset);
    t.table_checksum = XXH3_64bits(table.data(), table.size() * sizeof table[0]);
    t.checksum = swapfmt::trailer_checksum(t);
    pwrite_at(&t, sizeof t, std::filesystem::file_size(path) - sizeof t);
  }
};

TEST_F(SparseSwapFileTest, PartlyZeroChunksStoreOnlyTheirNonZeroPages) {
  const SwapFigures w = write(ram);
  EXPECT_EQ(w.sparse_chunks, kChunks / 2);
  EXPECT_EQ(w.zero_chunks, kChunks / 4);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.header().format_version, 2u);
  for (uint64_t c = 0; c < kChunks; ++c) {
    SCOPED_TRACE(c);
    const swapfmt::ChunkEntry& e = f.chunks()[c];
    switch (c % 4) {
      case 0:
        EXPECT_EQ(e.kind, swapfmt::kSparseRaw);
        EXPECT_EQ(e.stored_length, 8 + kChunk / 2);  // bitmap and the 8 random pages
        break;
      case 1:
        EXPECT_EQ(e.kind, swapfmt::kSparseZstd);
        EXPECT_LT(e.stored_length, kChunk / 4);
        break;
      case 2: EXPECT_EQ(e.kind, swapfmt::kRaw); break;
      default: EXPECT_EQ(e.kind, swapfmt::kZero);
    }
  }
  EXPECT_NO_THROW(f.verify(true, small_chunks()));
  EXPECT_TRUE(restored_into_memory(f) == ram);
  // A file target that reads as zero gets only the non-zero pages written.
  Backing target = Backing::open(dir.file("target.img"), kRam + kChunk, true);
  const SwapFigures r = f.restore(target, kChunk, true, small_chunks());
  EXPECT_TRUE(std::equal(ram.begin(), ram.end(), target.data() + kChunk));
  const auto on_disk = test::read_file(dir.file("target.img"));
  EXPECT_TRUE(std::equal(ram.begin(), ram.end(), on_disk.begin() + kChunk));
  uint64_t nonzero_pages = 0;
  for (uint64_t p = 0; p < kRam / kPage; ++p)
    nonzero_pages += std::any_of(ram.begin() + p * kPage, ram.begin() + (p + 1) * kPage, [](uint8_t b) { return b; });
  EXPECT_EQ(r.written_bytes, nonzero_pages * kPage);
}

TEST_F(SparseSwapFileTest, AnIncrementalSwapOutComparesSparseChunksAndReusesTheUnchanged) {
  write(ram, nullptr, dir.file("base.swap"));
  SwapFile base = SwapFile::open(dir.file("base.swap"), SwapFile::Mode::read);
  std::vector<uint8_t> next = ram;
  next[4 * kChunk + 2 * kPage + 5] = 1;  // a zero page of a sparse chunk is not zero any more
  next[5 * kChunk + 3 * kPage] ^= 0x20;  // a byte of a compressed sparse chunk
  SwapBase b{&base, nullptr, true};
  const SwapFigures w = write(next, &b);
  EXPECT_EQ(w.rewritten_chunks, 2u);
  EXPECT_EQ(w.reused_chunks, kChunks - 2);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.chunks()[0].stored_checksum, base.chunks()[0].stored_checksum);
  EXPECT_EQ(f.chunks()[1].stored_checksum, base.chunks()[1].stored_checksum);
  EXPECT_NE(f.chunks()[4].raw_checksum, base.chunks()[4].raw_checksum);
  EXPECT_TRUE(restored_into_memory(f) == next);
}

TEST_F(SparseSwapFileTest, ABitmapThatDoesNotFitItsChunkIsRefusedBeforeAnythingIsWritten) {
  write(ram);
  const std::vector<uint8_t> pristine = test::read_file(path);
  struct Case {
    const char* name;
    uint64_t word;  // chunk 0's bitmap: odd pages 0xaaaa
    const char* expect;
  } cases[] = {
      {"a page past the chunk", 0xaaaa | (uint64_t{1} << 40), "page bitmap is invalid"},
      {"no page", 0, "page bitmap is invalid"},
      {"more pages than stored", 0xaaab, "does not match its page bitmap"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    rewrite_chunk(0, [&](std::vector<uint8_t>& stored) { std::memcpy(stored.data(), &c.word, 8); });
    const uint64_t before = file_hash(path);
    const std::string why =
        refusal_of([&] { SwapFile::open(path, SwapFile::Mode::read).verify(false, small_chunks()); });
    EXPECT_TRUE(contains(why, "chunk 0 is corrupt") && contains(why, c.expect)) << why;
    const std::string target = dir.file("target.img");
    const std::string in =
        refusal_of([&] { swap_in_image(path, target, identity(), kRam, kVcpus, {small_chunks(), false}); });
    EXPECT_TRUE(contains(in, "chunk 0 is corrupt")) << in;
    EXPECT_FALSE(std::filesystem::exists(target));
    EXPECT_EQ(file_hash(path), before);
    pwrite_at(pristine.data(), pristine.size(), 0);
  }
}

TEST_F(SparseSwapFileTest, VersionOneFilesCannotHoldSparseChunksAndLaterVersionsAreRefused) {
  write(ram);
  rewrite_header([](swapfmt::Header& h) { h.format_version = 1; });
  std::string why = refusal_of([&] { SwapFile::open(path, SwapFile::Mode::read); });
  EXPECT_TRUE(contains(why, "chunk table is corrupt: chunk 0 (kind 3")) << why;
  rewrite_header([](swapfmt::Header& h) { h.format_version = 3; });
  why = refusal_of([&] { SwapFile::open(path, SwapFile::Mode::read); });
  EXPECT_TRUE(contains(why, "swap format version 3 is not supported (this nvhv reads versions 1 to 2)")) << why;
  // A version 1 file of full chunks only is still read.
  std::vector<uint8_t> full(kRam);
  std::mt19937_64 rng(5);
  fill_text(full.data(), full.size(), rng);
  write(full);
  rewrite_header([](swapfmt::Header& h) { h.format_version = 1; });
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.header().format_version, 1u);
  EXPECT_TRUE(restored_into_memory(f) == full);
}

}  // namespace
}  // namespace nvhv::persistence
