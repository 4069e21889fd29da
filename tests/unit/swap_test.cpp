// The swap engine: the file format round trip, what is stored for zero, compressible and random
// chunks, refusals of damaged or foreign swap files that leave every file as it was, incremental
// swap-out, and the image-level swap-out / swap-in protocol on real files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "persistence/image.hpp"
#include "persistence/swap.hpp"
#include "persistence/swap_image.hpp"
#include "persistence/swap_io.hpp"
#include "tests/unit/persistence_test_util.hpp"
#include "tests/unit/swap_test_util.hpp"

namespace nvhv::persistence {
namespace {

using nlohmann::json;
using test::contains;
using test::file_hash;
using test::refusal_of;
using test::sample_machine;
using test::small_chunks;

constexpr uint32_t kChunk = test::kSmallChunk;
constexpr uint64_t kRam = 4ull << 20;   // 64 chunks
constexpr uint64_t kChunks = kRam / kChunk;
constexpr uint32_t kVcpus = 2;

json identity(uint32_t vcpus = kVcpus) { return {{"vcpus", vcpus}, {"memory_mib", kRam >> 20}, {"machine", "test"}}; }

// Chunk i: zero when i % 4 == 0, text-like (compressible) when i % 4 == 1 or 2, random otherwise.
std::vector<uint8_t> mixed_ram(uint64_t seed) {
  std::vector<uint8_t> ram(kRam, 0);
  std::mt19937_64 rng(seed);
  for (uint64_t c = 0; c < kChunks; ++c) {
    uint8_t* p = ram.data() + c * kChunk;
    if (c % 4 == 0) continue;
    if (c % 4 == 3) {
      for (uint32_t i = 0; i < kChunk; ++i) p[i] = static_cast<uint8_t>(rng());
    } else {
      for (uint32_t i = 0; i < kChunk; ++i) p[i] = static_cast<uint8_t>("guest page contents "[(i + rng() % 2) % 20]);
    }
  }
  return ram;
}

std::vector<uint8_t> state_bytes(uint64_t seed) {
  std::vector<uint8_t> out;
  Encoder enc(out);
  encode(enc, sample_machine(kVcpus, seed));
  return out;
}

void xor_byte(const std::string& path, uint64_t offset, uint8_t mask = 0x40) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

class SwapFileTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path = dir.file("vm.swap");
  std::vector<uint8_t> ram = mixed_ram(1);
  std::vector<uint8_t> state = state_bytes(1);

  SwapSource source(const std::vector<uint8_t>& r) {
    SwapSource s;
    s.ram = r;
    s.state = state;
    s.identity = identity();
    s.vcpus = kVcpus;
    s.saved_realtime_ns = 1234;
    s.generation = 7;
    return s;
  }
  SwapFigures write(const std::vector<uint8_t>& r, const SwapTuning& t, const SwapBase* base = nullptr,
                    const std::string& to = "") {
    PendingSwapFile p = write_swap_file(to.empty() ? path : to, source(r), 0x1234 + r[kChunk + 5], t, base);
    p.publish();
    return p.figures();
  }
  std::vector<uint8_t> restored(const SwapFile& f) {
    Backing target = Backing::anonymous(kRam + 2 * kChunk);
    std::memset(target.data(), 0xee, target.size());  // not known zero: zero chunks must be stored
    f.restore(target, kChunk, false, small_chunks());
    return {target.data() + kChunk, target.data() + kChunk + kRam};
  }
};

TEST_F(SwapFileTest, RoundTripRestoresRamAndStateExactly) {
  const SwapFigures w = write(ram, small_chunks());
  EXPECT_EQ(w.bytes_scanned, kRam);
  EXPECT_EQ(w.chunks, kChunks);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.header().ram_size, kRam);
  EXPECT_EQ(f.header().vcpus, kVcpus);
  EXPECT_EQ(f.header().chunk_count, kChunks);
  EXPECT_EQ(f.header().generation, 7u);
  EXPECT_EQ(f.header().saved_realtime_ns, 1234u);
  EXPECT_EQ(f.identity(), identity().dump());
  EXPECT_TRUE(std::equal(state.begin(), state.end(), f.state().begin(), f.state().end()));
  EXPECT_EQ(f.consumed().at_ns, 0u);
  const SwapFigures v = f.verify(true, small_chunks());
  EXPECT_EQ(v.bytes_scanned, kRam);
  EXPECT_TRUE(restored(f) == ram);
  EXPECT_NO_THROW(f.check_matches(identity(), kRam, kVcpus));
  EXPECT_FALSE(std::filesystem::exists(swap_temp_path(path)));
}

TEST_F(SwapFileTest, RestoreIntoAFileUsesWritesAndMatches) {
  write(ram, small_chunks());
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  Backing target = Backing::open(dir.file("target.img"), kRam + kChunk, true);
  ASSERT_EQ(target.kind(), BackingKind::file);
  f.restore(target, kChunk, true, small_chunks());
  EXPECT_TRUE(std::equal(ram.begin(), ram.end(), target.data() + kChunk));
}

TEST_F(SwapFileTest, RestoreIntoAReusedFileOverwritesWhatItHeld) {
  // Short runs of non-zero pages go through the page cache, long ones with O_DIRECT (on file
  // systems that allow it); a target that is not known to be zero is written whole.
  std::vector<uint8_t> sparse = ram;
  for (uint64_t page = 0; page < kRam / 4096; page += 3) std::memset(sparse.data() + page * 4096, 0, 4096);
  write(sparse, small_chunks());
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  for (bool known_zero : {true, false}) {
    SCOPED_TRACE(known_zero ? "known zero" : "reused");
    std::filesystem::remove(dir.file("target.img"));
    Backing target = Backing::open(dir.file("target.img"), kRam + kChunk, true);
    if (!known_zero) {
      std::memset(target.data(), 0xee, target.size());
      target.persist(target.data(), target.size());
    }
    f.restore(target, kChunk, known_zero, small_chunks());
    EXPECT_TRUE(std::equal(sparse.begin(), sparse.end(), target.data() + kChunk));
    // What reached the file, not only the mapping.
    const auto on_disk = test::read_file(dir.file("target.img"));
    EXPECT_TRUE(std::equal(sparse.begin(), sparse.end(), on_disk.begin() + kChunk));
  }
}

TEST_F(SwapFileTest, VerifiedChunksAreKeptForTheRestoreSoTheFileIsReadOnce) {
  write(ram, small_chunks());
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  f.verify(false, small_chunks(), /*keep_for_restore=*/true);
  // Damage the file after the check: the restore uses what the check read, and the data it
  // checked is what lands in RAM.
  xor_byte(path, f.chunks()[3].offset + 10);
  EXPECT_TRUE(restored(f) == ram);
  // Nothing is kept for a second restore: it reads the file again and finds the damage.
  EXPECT_TRUE(contains(refusal_of([&] { restored(f); }), "chunk 3")) << refusal_of([&] { restored(f); });
}

TEST_F(SwapFileTest, ZeroChunksAreNotStored) {
  std::vector<uint8_t> sparse(kRam, 0);
  sparse[5 * kChunk + 100] = 1;
  const SwapFigures w = write(sparse, small_chunks());
  EXPECT_EQ(w.zero_chunks, kChunks - 1);
  EXPECT_EQ(w.compressed_chunks, 1u);
  EXPECT_LT(w.stored_bytes, 1024u);
  EXPECT_LT(std::filesystem::file_size(path), 64u * 1024);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.chunks()[0].kind, swapfmt::kZero);
  EXPECT_EQ(f.chunks()[5].kind, swapfmt::kSparseZstd);  // one non-zero page of 16
  EXPECT_EQ(w.sparse_chunks, 1u);
  EXPECT_TRUE(restored(f) == sparse);
}

TEST_F(SwapFileTest, CompressibleChunksAreCompressedAndRandomOnesStoredRaw) {
  const SwapFigures w = write(ram, small_chunks());
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  for (uint64_t c = 0; c < kChunks; ++c) {
    const uint32_t want = c % 4 == 0 ? swapfmt::kZero : c % 4 == 3 ? swapfmt::kRaw : swapfmt::kZstd;
    EXPECT_EQ(f.chunks()[c].kind, want) << "chunk " << c;
    if (want == swapfmt::kZstd) {
      EXPECT_LT(f.chunks()[c].stored_length, kChunk / 2) << "chunk " << c;
    }
  }
  EXPECT_EQ(w.zero_chunks, kChunks / 4);
  EXPECT_EQ(w.raw_chunks, kChunks / 4);
  EXPECT_EQ(w.compressed_chunks, kChunks / 2);
}

TEST_F(SwapFileTest, LevelIsRecordedAndAHigherLevelCompressesMore) {
  std::vector<uint8_t> text(kRam);
  std::mt19937_64 rng(3);
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "kernel ", "page ", "cache ", "vm "};
  for (size_t i = 0; i < text.size();) {
    const char* w = words[rng() % 8];
    for (; *w && i < text.size(); ++w) text[i++] = static_cast<uint8_t>(*w);
  }
  const uint64_t fast = write(text, small_chunks(1)).stored_bytes;
  EXPECT_EQ(SwapFile::open(path, SwapFile::Mode::read).header().compression_level, 1);
  const uint64_t strong = write(text, small_chunks(9)).stored_bytes;
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.header().compression_level, 9);
  EXPECT_LT(strong, fast);
  EXPECT_TRUE(restored(f) == text);
  EXPECT_THROW(write(text, small_chunks(1000)), std::invalid_argument);
}

TEST_F(SwapFileTest, CorruptChunkIsRefusedNamingItAndNothingIsWritten) {
  write(ram, small_chunks());
  const auto entry = SwapFile::open(path, SwapFile::Mode::read).chunks()[6];
  ASSERT_EQ(entry.kind, swapfmt::kZstd);
  xor_byte(path, entry.offset + entry.stored_length / 2);
  const uint64_t before = file_hash(path);
  const std::string why = refusal_of([&] {
    SwapFile f = SwapFile::open(path, SwapFile::Mode::read);  // the structure is intact
    f.verify(false, small_chunks());
  });
  EXPECT_TRUE(contains(why, "chunk 6") && contains(why, "corrupt")) << why;
  const std::string target = dir.file("target.img");
  const std::string in = refusal_of([&] { swap_in_image(path, target, identity(), kRam, kVcpus, {small_chunks(), false}); });
  EXPECT_TRUE(contains(in, "chunk 6")) << in;
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_EQ(file_hash(path), before);
}

TEST_F(SwapFileTest, TruncatedFilesAreRefusedWithTheReason) {
  write(ram, small_chunks());
  const auto full = test::read_file(path);
  for (uint64_t length : {uint64_t{0}, uint64_t{100}, uint64_t{5000}, uint64_t{full.size() / 2}, uint64_t{full.size() - 1}}) {
    SCOPED_TRACE(length);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(full.data()), static_cast<std::streamsize>(length));
    }
    const uint64_t before = file_hash(path);
    const std::string why = refusal_of([&] { SwapFile::open(path, SwapFile::Mode::update); });
    EXPECT_TRUE(contains(why, "truncated") || contains(why, "empty") || contains(why, "incomplete")) << why;
    EXPECT_TRUE(contains(why, path)) << why;
    EXPECT_EQ(file_hash(path), before);
  }
}

TEST_F(SwapFileTest, DamagedHeaderTrailerTableOrStateIsRefused) {
  write(ram, small_chunks());
  const auto pristine = test::read_file(path);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  const uint64_t size = f.file_size();
  const uint64_t table = size - 64 - kChunks * sizeof(swapfmt::ChunkEntry);
  struct Case {
    uint64_t offset;
    const char* expect;
  } cases[] = {
      {0, "not an nvhv swap file"},
      {40, "header is corrupt"},
      {swapfmt::kIdentityOffset + 2, "identity"},
      {f.header().state_offset + 10, "machine state is corrupt"},
      {table + 40, "chunk table is corrupt"},
      {size - 30, "trailer"},
      {size - 60, "incomplete"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expect);
    xor_byte(path, c.offset);
    const std::string why = refusal_of([&] { SwapFile::open(path, SwapFile::Mode::read); });
    EXPECT_TRUE(contains(why, c.expect)) << why;
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(pristine.data()), static_cast<std::streamsize>(pristine.size()));
  }
}

TEST_F(SwapFileTest, OtherVmIdentityIsRefusedListingTheDifferences) {
  write(ram, small_chunks());
  const std::string why =
      refusal_of([&] { SwapFile::open(path, SwapFile::Mode::read).check_matches(identity(4), kRam, 4); });
  EXPECT_TRUE(contains(why, "vcpus") && contains(why, "2") && contains(why, "4")) << why;
  const std::string target = dir.file("target.img");
  const uint64_t before = file_hash(path);
  const std::string in = refusal_of([&] { swap_in_image(path, target, identity(4), kRam, 4, {small_chunks(), false}); });
  EXPECT_TRUE(contains(in, "different configuration")) << in;
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_EQ(file_hash(path), before);
}

TEST_F(SwapFileTest, IncrementalRewriteCompressesOnlyDirtyChunksAndCopiesTheRest) {
  write(ram, small_chunks(), nullptr, dir.file("base.swap"));
  SwapFile base = SwapFile::open(dir.file("base.swap"), SwapFile::Mode::read);
  std::vector<uint8_t> next = ram;
  next[3 * kChunk + 7] ^= 0xff;   // text chunk
  next[8 * kChunk + 99] = 42;     // was a zero chunk
  std::vector<bool> dirty(kChunks, false);
  dirty[3] = dirty[8] = true;
  SwapBase b{&base, &dirty, true};
  const SwapFigures w = write(next, small_chunks(), &b);
  EXPECT_EQ(w.compressed_input_bytes, 2u * kChunk);
  EXPECT_EQ(w.compressed_chunks + w.raw_chunks, 2u);
  EXPECT_EQ(w.reused_chunks, kChunks - 2);
  EXPECT_EQ(w.rewritten_chunks, 2u);
  EXPECT_EQ(w.marked_dirty_chunks, 2u);
  EXPECT_TRUE(w.dirty_map && w.clean_verified);
  EXPECT_EQ(w.dirty_map_misses, 0u);
  SwapFile f = SwapFile::open(path, SwapFile::Mode::read);
  EXPECT_EQ(f.header().base_swap_id, base.swap_id());
  // Unchanged chunks are the base's stored bytes, copied.
  for (uint64_t c : {1u, 2u, 7u}) EXPECT_EQ(f.chunks()[c].stored_checksum, base.chunks()[c].stored_checksum);
  EXPECT_TRUE(restored(f) == next);
}

TEST_F(SwapFileTest, AWrongDirtyMapIsCaughtByTheChunkChecksums) {
  write(ram, small_chunks(), nullptr, dir.file("base.swap"));
  SwapFile base = SwapFile::open(dir.file("base.swap"), SwapFile::Mode::read);
  std::vector<uint8_t> next = ram;
  next[5 * kChunk] ^= 1;   // changed, but the map does not say so
  next[12 * kChunk] = 9;   // a zero chunk that is not zero any more, also unmarked
  std::vector<bool> dirty(kChunks, false);
  SwapBase b{&base, &dirty, true};
  const SwapFigures w = write(next, small_chunks(), &b);
  EXPECT_EQ(w.dirty_map_misses, 2u);
  EXPECT_EQ(w.reused_chunks, kChunks - 2);
  EXPECT_TRUE(restored(SwapFile::open(path, SwapFile::Mode::read)) == next);
}

TEST_F(SwapFileTest, ATrustedDirtyMapCopiesCleanChunksWithoutReadingThem) {
  write(ram, small_chunks(), nullptr, dir.file("base.swap"));
  SwapFile base = SwapFile::open(dir.file("base.swap"), SwapFile::Mode::read);
  std::vector<uint8_t> next = ram;
  next[3 * kChunk + 7] ^= 0xff;  // marked dirty
  next[6 * kChunk + 1] ^= 0xff;  // marked dirty
  next[9 * kChunk + 5] ^= 0xff;  // changed, but the map does not say so: trusted, it is not read
  std::vector<bool> dirty(kChunks, false);
  dirty[3] = dirty[6] = true;
  SwapBase b{&base, &dirty, false};
  const SwapFigures w = write(next, small_chunks(), &b);
  EXPECT_TRUE(w.dirty_map);
  EXPECT_FALSE(w.clean_verified);
  EXPECT_EQ(w.marked_dirty_chunks, 2u);
  EXPECT_EQ(w.rewritten_chunks, 2u);
  EXPECT_EQ(w.reused_chunks, kChunks - 2);
  EXPECT_EQ(w.ram_read_bytes, 2u * kChunk);
  EXPECT_EQ(w.dirty_map_misses, 0u);  // not looked for
  std::vector<uint8_t> expected = next;
  expected[9 * kChunk + 5] ^= 0xff;  // the base's copy of the unmarked chunk
  EXPECT_TRUE(restored(SwapFile::open(path, SwapFile::Mode::read)) == expected);
  EXPECT_TRUE(contains(w.summary(), "dirty map: 2 chunks marked dirty, the clean ones copied unread")) << w.summary();
}

TEST_F(SwapFileTest, WithoutADirtyMapEveryChunkIsComparedEvenWhenTrustIsAskedFor) {
  write(ram, small_chunks(), nullptr, dir.file("base.swap"));
  SwapFile base = SwapFile::open(dir.file("base.swap"), SwapFile::Mode::read);
  std::vector<uint8_t> next = ram;
  next[9 * kChunk + 5] ^= 0xff;
  SwapBase b{&base, nullptr, false};
  const SwapFigures w = write(next, small_chunks(), &b);
  EXPECT_FALSE(w.dirty_map);
  EXPECT_EQ(w.rewritten_chunks, 1u);
  EXPECT_EQ(w.ram_read_bytes, kRam);
  EXPECT_TRUE(restored(SwapFile::open(path, SwapFile::Mode::read)) == next);
}

TEST_F(SwapFileTest, ProgressIsReportedUpToTheTotal) {
  std::vector<SwapProgress> seen;
  SwapTuning t = small_chunks();
  t.progress_interval = std::chrono::milliseconds(0);
  t.progress = [&](const SwapProgress& p) { seen.push_back(p); };
  write(ram, t);
  ASSERT_GE(seen.size(), 2u);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].done_bytes, seen[i - 1].done_bytes);
  EXPECT_EQ(seen.back().done_bytes, kRam);
  EXPECT_EQ(seen.back().total_bytes, kRam);
  EXPECT_STREQ(seen.back().phase, "swap-out");
  seen.clear();
  SwapFile::open(path, SwapFile::Mode::read).verify(true, t);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().done_bytes, kRam);
  EXPECT_STREQ(seen.back().phase, "verify");
}

TEST_F(SwapFileTest, ASecondWriterOfTheSamePathIsRefused) {
  const std::string temp = swap_temp_path(path).string();
  int fd = ::open(temp.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  const std::string why = refusal_of([&] { write(ram, small_chunks()); });
  EXPECT_TRUE(contains(why, "another swap-out")) << why;
  EXPECT_TRUE(std::filesystem::exists(temp));  // not ours to remove
  ::close(fd);
}

// ---- the image-level protocol ----

class SwapImageTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string swap = dir.file("vm.swap");
  ImageGeometry geo = ImageGeometry::for_vm(kRam, kVcpus);
  MachineState state = sample_machine(kVcpus, 5);

  void make_image(const std::string& path, const std::vector<uint8_t>& ram) {
    Backing b = Backing::open(path, Image::required_size(geo), true);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    std::memcpy(img.ram(), ram.data(), ram.size());
    img.persist_ram();
    img.commit(state);
  }
  SwapOutResult swap_out(const std::string& path, const std::vector<bool>* dirty = nullptr) {
    Backing b = Backing::open(path, 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus, {false, true});
    SwapOutOptions o;
    o.tuning = small_chunks();
    o.dirty_chunks = dirty;
    return swap_out_image(img, swap, o);
  }
  SwapInResult swap_in(const std::string& target, bool force = false) {
    return swap_in_image(swap, target, identity(), kRam, kVcpus, {small_chunks(), force});
  }
  // Opens like `nvhv run`: the checkpoint and RAM, or the refusal.
  std::vector<uint8_t> resume(const std::string& path, MachineState* loaded = nullptr) {
    Backing b = Backing::open(path, Image::required_size(geo), false);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    EXPECT_EQ(img.status(), ImageStatus::resumable) << img.reason();
    if (loaded) *loaded = img.load_checkpoint();
    return {img.ram(), img.ram() + kRam};
  }
  std::string open_refusal(const std::string& path) {
    try {
      Backing b = Backing::open(path, 0, false);
      Image::open(b, identity(), kRam, kVcpus);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(opened)";
  }
};

TEST_F(SwapImageTest, SwapOutReleasesTheImageAndSwapInRestoresItElsewhere) {
  const auto ram = mixed_ram(9);
  make_image(dir.file("a.img"), ram);
  const SwapOutResult out = swap_out(dir.file("a.img"));
  EXPECT_FALSE(out.incremental);
  EXPECT_EQ(std::filesystem::file_size(dir.file("a.img")), layout::kHeaderRegion);
  EXPECT_TRUE(contains(out.released, "truncated")) << out.released;
  const std::string refused = open_refusal(dir.file("a.img"));
  EXPECT_TRUE(contains(refused, "swapped out")) << refused;
  const auto notice = swap_state_notice(dir.file("a.img"));
  ASSERT_TRUE(notice);
  EXPECT_TRUE(contains(*notice, "--swap-in")) << *notice;

  const SwapInResult in = swap_in(dir.file("b.img"));
  EXPECT_EQ(in.swap_id, out.swap_id);
  MachineState loaded;
  EXPECT_TRUE(resume(dir.file("b.img"), &loaded) == ram);
  test::expect_same(loaded, state);
  {
    Backing b = Backing::open(dir.file("b.img"), 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    EXPECT_EQ(img.swap_record().state, layout::kSwapInUse);
    EXPECT_EQ(img.swap_record().origin_id, out.swap_id);
  }
  SwapFile f = SwapFile::open(swap, SwapFile::Mode::read);
  EXPECT_NE(f.consumed().at_ns, 0u);
  EXPECT_TRUE(contains(f.consumed().target, "b.img")) << f.consumed().target;
  EXPECT_FALSE(swap_state_notice(dir.file("b.img")));
}

TEST_F(SwapImageTest, SwapInBackIntoTheReleasedImageWorks) {
  const auto ram = mixed_ram(2);
  make_image(dir.file("a.img"), ram);
  swap_out(dir.file("a.img"));
  swap_in(dir.file("a.img"));
  EXPECT_TRUE(resume(dir.file("a.img")) == ram);
}

TEST_F(SwapImageTest, SwapInIntoAPreallocatedBackingClearsWhatItHeld) {
  const auto ram = mixed_ram(12);
  make_image(dir.file("a.img"), ram);
  swap_out(dir.file("a.img"));
  {
    // A backing the operator made: a blank header area, old data where guest RAM goes.
    std::ofstream out(dir.file("pre.img"), std::ios::binary);
    std::vector<char> junk(Image::required_size(geo), 0);
    std::fill(junk.begin() + static_cast<long>(geo.ram_offset), junk.end(), 'x');
    out.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  swap_in(dir.file("pre.img"));
  EXPECT_TRUE(resume(dir.file("pre.img")) == ram);  // zero chunks included
}

TEST_F(SwapImageTest, AConsumedSwapFileIsNotSwappedInTwice) {
  make_image(dir.file("a.img"), mixed_ram(3));
  swap_out(dir.file("a.img"));
  swap_in(dir.file("b.img"));
  const uint64_t before = file_hash(swap);
  const std::string why = refusal_of([&] { swap_in(dir.file("c.img")); });
  EXPECT_TRUE(contains(why, "already swapped in") && contains(why, "b.img")) << why;
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.img")));
  EXPECT_EQ(file_hash(swap), before);
}

TEST_F(SwapImageTest, SwapInNeverOverwritesAnImageInUseOrForeignData) {
  make_image(dir.file("a.img"), mixed_ram(4));
  swap_out(dir.file("a.img"));
  make_image(dir.file("live.img"), mixed_ram(5));
  const uint64_t live = file_hash(dir.file("live.img"));
  std::string why = refusal_of([&] { swap_in(dir.file("live.img")); });
  EXPECT_TRUE(contains(why, "in use")) << why;
  EXPECT_EQ(file_hash(dir.file("live.img")), live);
  std::ofstream(dir.file("notes.txt")) << "precious";
  why = refusal_of([&] { swap_in(dir.file("notes.txt")); });
  EXPECT_TRUE(contains(why, "neither blank nor an nvhv image")) << why;
  EXPECT_EQ(std::filesystem::file_size(dir.file("notes.txt")), 8u);
  EXPECT_EQ(SwapFile::open(swap, SwapFile::Mode::read).consumed().at_ns, 0u);
}

TEST_F(SwapImageTest, SwapOutNeverReplacesASwapFileThatHoldsAVm) {
  make_image(dir.file("a.img"), mixed_ram(6));
  swap_out(dir.file("a.img"));
  make_image(dir.file("other.img"), mixed_ram(7));
  const uint64_t before = file_hash(swap);
  const std::string why = refusal_of([&] { swap_out(dir.file("other.img")); });
  EXPECT_TRUE(contains(why, "has not been swapped in")) << why;
  EXPECT_EQ(file_hash(swap), before);
  EXPECT_NO_THROW(resume(dir.file("other.img")));  // still in use, untouched
}

TEST_F(SwapImageTest, IncrementalSwapOutAfterSwapInCopiesUnchangedChunks) {
  auto ram = mixed_ram(8);
  make_image(dir.file("a.img"), ram);
  swap_out(dir.file("a.img"));
  swap_in(dir.file("b.img"));
  {
    // The guest runs: it writes two chunks, then a new checkpoint is committed.
    Backing b = Backing::open(dir.file("b.img"), 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    img.mark_consumed();
    img.ram()[10 * kChunk] ^= 0x5a;
    img.ram()[20 * kChunk + 3] = 1;
    img.persist_ram();
    img.commit(state);
  }
  ram[10 * kChunk] ^= 0x5a;
  ram[20 * kChunk + 3] = 1;
  std::vector<bool> dirty(kChunks, false);
  dirty[10] = dirty[20] = true;
  const SwapOutResult out = swap_out(dir.file("b.img"), &dirty);
  EXPECT_TRUE(out.incremental);
  EXPECT_EQ(out.figures.compressed_input_bytes, 2u * kChunk);
  EXPECT_EQ(out.figures.reused_chunks, kChunks - 2);
  swap_in(dir.file("c.img"));
  EXPECT_TRUE(resume(dir.file("c.img")) == ram);
}

TEST_F(SwapImageTest, MemoryBackingIsMarkedFreeNotTruncated) {
  Backing b = Backing::anonymous(Image::required_size(geo));
  Image img = Image::open(b, identity(), kRam, kVcpus);
  img.commit(state);
  SwapOutOptions o;
  o.tuning = small_chunks();
  const SwapOutResult out = swap_out_image(img, swap, o);
  EXPECT_TRUE(contains(out.released, "marked free")) << out.released;
  EXPECT_EQ(probe_image(b.data(), b.size()).swap.state, layout::kSwapReleased);
  try {
    Image::open(b, identity(), kRam, kVcpus);
    ADD_FAILURE() << "a released image opened";
  } catch (const ImageError& e) {
    EXPECT_TRUE(contains(e.what(), "swapped out")) << e.what();
  }
  // Even opened past the swap record, its checkpoint is gone: an older nvhv cannot resume it.
  EXPECT_EQ(Image::open(b, identity(), kRam, kVcpus, {false, true}).status(), ImageStatus::no_checkpoint);
}

TEST_F(SwapImageTest, AnInterruptedSwapOutIsRefusedByRunAndFinishedByARerun) {
  const auto ram = mixed_ram(10);
  make_image(dir.file("a.img"), ram);
  uint64_t id = 0;
  {
    // The steps of swap_out_image up to the rename, then "power loss".
    Backing b = Backing::open(dir.file("a.img"), 0, false);
    Image img = Image::open(b, identity(), kRam, kVcpus);
    SwapSource src;
    src.ram = {img.ram(), kRam};
    src.state = img.checkpoint_payload();
    src.identity = identity();
    src.vcpus = kVcpus;
    PendingSwapFile p = write_swap_file(swap, src, 0xabcdef, small_chunks());
    id = p.swap_id();
    img.begin_swap_out(id, swapio::path_hash(swapio::absolute_path(swap)));
    p.publish();
  }
  const std::string refused = open_refusal(dir.file("a.img"));
  EXPECT_TRUE(contains(refused, "interrupted")) << refused;
  // A swap-in of the file it was writing is allowed back into it; a rerun finishes instead.
  const SwapOutResult out = swap_out(dir.file("a.img"));
  EXPECT_TRUE(out.resumed_interrupted);
  EXPECT_EQ(out.swap_id, id);
  swap_in(dir.file("b.img"));
  EXPECT_TRUE(resume(dir.file("b.img")) == ram);
}

TEST_F(SwapImageTest, AnInterruptedSwapInIsRedoneIntoItsTargetOnly) {
  const auto ram = mixed_ram(11);
  make_image(dir.file("a.img"), ram);
  const uint64_t id = swap_out(dir.file("a.img")).swap_id;
  swap_in(dir.file("b.img"));
  {
    // Back to the state of a swap-in stopped after consuming the file, before publishing.
    Backing b = Backing::open(dir.file("b.img"), 0, false);
    Image::mark_incoming(b, id, 0);
  }
  EXPECT_TRUE(contains(open_refusal(dir.file("b.img")), "swap-in")) << open_refusal(dir.file("b.img"));
  EXPECT_TRUE(contains(refusal_of([&] { swap_in(dir.file("c.img")); }), "already swapped in"));
  swap_in(dir.file("b.img"));
  EXPECT_TRUE(resume(dir.file("b.img")) == ram);
}

TEST_F(SwapImageTest, SwapOutNeedsACommittedCheckpoint) {
  {
    Backing b = Backing::open(dir.file("a.img"), Image::required_size(geo), true);
    Image::open(b, identity(), kRam, kVcpus);
  }
  const std::string why = refusal_of([&] { swap_out(dir.file("a.img")); });
  EXPECT_TRUE(contains(why, "no committed checkpoint")) << why;
  EXPECT_FALSE(std::filesystem::exists(swap));
}

TEST(ImageSwapRecordTest, FormatKeepsAnIncomingRecordOnlyAndRunRefusesEveryOtherState) {
  const auto geo = ImageGeometry::for_vm(kRam, kVcpus);
  Backing b = Backing::anonymous(Image::required_size(geo));
  // A swap-in marks a blank backing, then formats it: the mark survives and refuses a plain open.
  Image::mark_incoming(b, 77, 0);
  { Image::open(b, identity(), kRam, kVcpus, {true, false}); }
  EXPECT_EQ(probe_image(b.data(), b.size()).swap.state, layout::kSwapIncoming);
  EXPECT_THROW(Image::open(b, identity(), kRam, kVcpus), ImageError);
  {
    Image img = Image::open(b, identity(), kRam, kVcpus, {false, true});
    img.publish_swap_in();
    EXPECT_EQ(img.swap_record().origin_id, 77u);
  }
  Image img = Image::open(b, identity(), kRam, kVcpus);  // in use again
  img.commit(sample_machine(kVcpus, 1));
  img.begin_swap_out(88, 0);
  EXPECT_THROW(Image::open(b, identity(), kRam, kVcpus), ImageError);  // outgoing
  Image again = Image::open(b, identity(), kRam, kVcpus, {false, true});
  again.finish_swap_out();
  EXPECT_THROW(Image::open(b, identity(), kRam, kVcpus), ImageError);  // released
  // Formatting over a released image (as asked) clears its record.
  { Image::open(b, identity(), kRam, kVcpus, {true, false}); }
  const ImageProbe p = probe_image(b.data(), b.size());
  EXPECT_EQ(p.swap.state, layout::kSwapInUse);
  EXPECT_EQ(p.swap.peer_id, 0u);
}

TEST(ImageProbeTest, TellsBlankImagesAndForeignData) {
  std::vector<uint8_t> area(layout::kHeaderRegion, 0);
  EXPECT_EQ(probe_image(area.data(), area.size()).kind, ImageProbe::blank);
  area[1000] = 1;
  EXPECT_EQ(probe_image(area.data(), area.size()).kind, ImageProbe::foreign);
  EXPECT_EQ(probe_image(area.data(), 100).kind, ImageProbe::foreign);
  Backing b = Backing::anonymous(Image::required_size(ImageGeometry::for_vm(kRam, kVcpus)));
  Image::open(b, identity(), kRam, kVcpus);
  const ImageProbe p = probe_image(b.data(), b.size());
  EXPECT_EQ(p.kind, ImageProbe::image);
  EXPECT_EQ(p.swap.state, layout::kSwapInUse);  // images that never swapped read as in use
  EXPECT_EQ(p.identity, identity().dump());
}

}  // namespace
}  // namespace nvhv::persistence
