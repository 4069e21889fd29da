// The swap engine's large aligned I/O (persistence/swap_io): spans read and written with and
// without O_DIRECT, and the sequential writer that writes behind its caller.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "persistence/swap_io.hpp"
#include "tests/unit/persistence_test_util.hpp"
#include "tests/unit/swap_test_util.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::persistence {
namespace {

using test::contains;

// On the test directory's file system and on tmpfs (older kernels refuse O_DIRECT there), with a
// direct descriptor where the file system gives one and without (the page-cache fallback), every
// span reads and writes back exactly.
TEST(SwapIoTest, SpansOfAnyAlignmentReadAndWriteExactly) {
  test::TempDir dir;
  const std::string shm = "/dev/shm/nvhv-swap-io-" + std::to_string(::getpid());
  for (const auto& [path, use_direct] : {std::pair{dir.file("io"), true}, std::pair{dir.file("io"), false},
                                         std::pair{shm, true}, std::pair{shm, false}}) {
    SCOPED_TRACE(path + (use_direct ? " direct" : " page cache"));
    if (!std::filesystem::is_directory(std::filesystem::path(path).parent_path())) continue;
    std::vector<uint8_t> bytes(3 * 4096 + 123);
    std::mt19937_64 rng(3);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    UniqueFd rdirect = use_direct ? swapio::reopen_direct(fd.get(), O_RDONLY) : UniqueFd();
    UniqueFd wdirect = use_direct ? swapio::reopen_direct(fd.get(), O_WRONLY) : UniqueFd();
    swapio::AlignedBuffer buf;
    const std::pair<uint64_t, size_t> spans[] = {{0, 10}, {100, 5000}, {4095, 4097}, {8192, 4096}, {bytes.size() - 50, 50}, {0, bytes.size()}};
    for (auto [offset, n] : spans) {
      const uint8_t* p = swapio::read_span(rdirect.get(), fd.get(), offset, n, buf);
      ASSERT_NE(p, nullptr) << offset << "+" << n;
      EXPECT_TRUE(std::equal(p, p + n, bytes.begin() + static_cast<long>(offset))) << offset << "+" << n;
    }
    EXPECT_EQ(swapio::read_span(rdirect.get(), fd.get(), bytes.size() - 10, 20, buf), nullptr);
    // An aligned write (direct where allowed) and an unaligned one (page cache).
    swapio::AlignedBuffer out;
    std::memset(out.reserve(4096), 0x5a, 4096);
    swapio::write_span(wdirect.get(), fd.get(), out.data(), 4096, 4096, path);
    std::memset(bytes.data() + 4096, 0x5a, 4096);
    swapio::write_span(wdirect.get(), fd.get(), out.data() + 1, 100, 9000, path);
    std::memset(bytes.data() + 9000, 0x5a, 100);
    EXPECT_TRUE(test::read_file(path) == bytes);
    std::filesystem::remove(path);
  }
}

// Blocks are written by the writer's own thread while the next fills: what reaches the file is
// every appended byte in order, whatever the sizes, with the file cut to its exact length.
TEST(SwapIoTest, TheSequentialWriterWritesEveryByteInOrderBehindTheCaller) {
  test::TempDir dir;
  const std::string shm = "/dev/shm/nvhv-swap-writer-" + std::to_string(::getpid());
  for (const std::string& path : {dir.file("seq"), shm}) {
    SCOPED_TRACE(path);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    std::vector<uint8_t> expected;
    std::mt19937_64 rng(9);
    {
      swapio::SequentialWriter w(fd.get(), path, path);
      // 40 MiB in appends of 1 byte to 3 MiB: many 8 MiB blocks, several split across appends.
      while (expected.size() < (40u << 20)) {
        std::vector<uint8_t> piece(1 + rng() % (3u << 20));
        for (auto& b : piece) b = static_cast<uint8_t>(rng());
        w.append(piece.data(), piece.size());
        expected.insert(expected.end(), piece.begin(), piece.end());
        if (rng() % 8 == 0) {
          const uint64_t to = (expected.size() + 4095) / 4096 * 4096;
          w.pad_to(to);
          expected.resize(to, 0);
        }
      }
      w.finish();
      EXPECT_EQ(w.offset(), expected.size());
      EXPECT_EQ(w.bytes_written(), expected.size());
    }
    EXPECT_TRUE(test::read_file(path) == expected);
    std::filesystem::remove(path);
  }
}

TEST(SwapIoTest, AFailedBackgroundWriteIsThrownToTheWriter) {
  test::TempDir dir;
  const std::string path = dir.file("ro");
  std::ofstream(path).put('x');
  UniqueFd read_only(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only);
  // No direct descriptor (the path does not exist): every block goes through the read-only fd.
  swapio::SequentialWriter w(read_only.get(), dir.file("missing/ro"), "the test file");
  std::vector<uint8_t> block(9u << 20, 1);
  try {
    w.append(block.data(), block.size());  // hands one block to the writer thread
    w.finish();
    ADD_FAILURE() << "a write to a read-only descriptor succeeded";
  } catch (const SystemError& e) {
    EXPECT_TRUE(contains(e.what(), "write the test file at offset 0")) << e.what();
  }
}

}  // namespace
}  // namespace nvhv::persistence
