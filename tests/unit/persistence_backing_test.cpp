// Backing: creating, sizing, refusing and mapping files the way KVM will use them.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "persistence/backing.hpp"
#include "tests/unit/persistence_test_util.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::persistence {
namespace {

constexpr uint64_t kMiB = 1 << 20;

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected exception not thrown";
  return {};
}

TEST(Backing, CreatesMissingFilePrivateAndZeroed) {
  test::TempDir dir;
  const std::string path = dir.file("vm.img");
  Backing b = Backing::open(path, 4 * kMiB, true);
  EXPECT_EQ(b.size(), 4 * kMiB);
  EXPECT_EQ(b.kind(), BackingKind::file);  // ext4/tmpfs/overlay here: no MAP_SYNC
  EXPECT_EQ(b.granularity(), Granularity::page);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
  EXPECT_TRUE(std::all_of(b.data(), b.data() + b.size(), [](uint8_t x) { return x == 0; }));
}

// A page-cache file needs only mmap and msync: libpmem2 (and the libndctl, libkmod and
// libcrypto it brings) must stay out of the process, or every resume pays for loading it.
// (Only a character device loads it, and the tests that open one come later in this file.)
TEST(Backing, PageCacheFileLeavesLibpmem2Unloaded) {
  test::TempDir dir;
  Backing b = Backing::open(dir.file("plain.img"), 4 * kMiB, true);
  ASSERT_EQ(b.kind(), BackingKind::file);
  EXPECT_EQ(::dlopen("libpmem2.so.1", RTLD_NOW | RTLD_NOLOAD), nullptr);
  Backing anon = Backing::anonymous(kMiB);
  EXPECT_EQ(::dlopen("libpmem2.so.1", RTLD_NOW | RTLD_NOLOAD), nullptr);
}

// KVM backs guest RAM with huge pages only where the host mapping is 2 MiB aligned.
TEST(Backing, MappingsStart2MiBAligned) {
  test::TempDir dir;
  Backing file = Backing::open(dir.file("aligned.img"), 6 * kMiB, true);
  Backing anon = Backing::anonymous(3 * kMiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(file.data()) % (2 * kMiB), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(anon.data()) % (2 * kMiB), 0u);
  anon.data()[3 * kMiB - 1] = 7;  // the whole length is mapped read-write
  file.data()[6 * kMiB - 1] = 7;
}

TEST(Backing, MissingFileWithoutCreateIsAnError) {
  test::TempDir dir;
  const std::string path = dir.file("absent.img");
  const auto msg = error_of<SystemError>([&] { Backing::open(path, kMiB, false); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Backing, SmallerExistingFileIsRefusedUnchangedUnlessGrowing) {
  test::TempDir dir;
  const std::string path = dir.file("small.img");
  { Backing::open(path, 2 * kMiB, true); }
  const auto msg = error_of<ConfigError>([&] { Backing::open(path, 8 * kMiB, true); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 MiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8 MiB"), std::string::npos) << msg;
  EXPECT_EQ(std::filesystem::file_size(path), 2 * kMiB);

  Backing grown = Backing::open(path, 8 * kMiB, Backing::Options{false, true});
  EXPECT_EQ(grown.size(), 8 * kMiB);
  EXPECT_EQ(std::filesystem::file_size(path), 8 * kMiB);
}

TEST(Backing, LargerFileIsMappedWhole) {
  test::TempDir dir;
  const std::string path = dir.file("big.img");
  { Backing::open(path, 6 * kMiB, true); }
  {
    Backing b = Backing::open(path, 2 * kMiB, false);
    EXPECT_EQ(b.size(), 6 * kMiB);
  }
  Backing any = Backing::open(path, 0, false);  // 0: whatever size it has
  EXPECT_EQ(any.size(), 6 * kMiB);
}

// KVM maps this memory into the guest, so stores must reach the file (MAP_SHARED), and
// persist() must make them durable.
TEST(Backing, StoresReachTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("shared.img");
  Backing b = Backing::open(path, 2 * kMiB, true);
  std::memcpy(b.data() + kMiB + 5, "persisted", 9);
  b.persist(b.data() + kMiB + 5, 9);
  b.flush(b.data(), 1);
  b.drain();
  const auto bytes = test::read_file(path);
  ASSERT_EQ(bytes.size(), 2 * kMiB);
  EXPECT_EQ(std::string(bytes.begin() + kMiB + 5, bytes.begin() + kMiB + 14), "persisted");
}

TEST(Backing, SecondOpenOfTheSameFileIsRefused) {
  test::TempDir dir;
  const std::string path = dir.file("locked.img");
  Backing first = Backing::open(path, kMiB, true);
  const auto msg = error_of<ConfigError>([&] { Backing::open(path, kMiB, false); });
  EXPECT_NE(msg.find("in use"), std::string::npos) << msg;
  first = Backing::anonymous(4096);  // releases the lock
  EXPECT_NO_THROW(Backing::open(path, kMiB, false));
}

TEST(Backing, DirectoriesAndOtherDevicesAreRefused) {
  test::TempDir dir;
  std::filesystem::create_directory(dir.file("d"));
  // A directory cannot even be opened O_RDWR.
  EXPECT_THROW(Backing::open(dir.file("d"), kMiB, false), SystemError);
  const auto msg = error_of<ConfigError>([&] { Backing::open("/dev/null", 0, false); });
  EXPECT_NE(msg.find("not device-DAX"), std::string::npos) << msg;
}

TEST(Backing, AnonymousMemory) {
  Backing b = Backing::anonymous(2 * kMiB);
  EXPECT_EQ(b.kind(), BackingKind::memory);
  EXPECT_EQ(b.size(), 2 * kMiB);
  b.data()[b.size() - 1] = 1;
  b.persist(b.data(), b.size());
}

TEST(Backing, MovedFromIsEmpty) {
  Backing a = Backing::anonymous(kMiB);
  uint8_t* p = a.data();
  Backing b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(a.size(), 0u);
}

// Needs real hardware or an emulated namespace: NVHV_TEST_DEVDAX=/dev/dax0.0
TEST(Backing, DeviceDax) {
  const char* dev = std::getenv("NVHV_TEST_DEVDAX");
  if (!dev) GTEST_SKIP() << "set NVHV_TEST_DEVDAX to a device-DAX node to run";
  Backing b = Backing::open(dev, 2 * kMiB, false);
  EXPECT_EQ(b.kind(), BackingKind::devdax);
  EXPECT_EQ(b.size() % (2 * kMiB), 0u);
  EXPECT_NE(b.granularity(), Granularity::page);
}

}  // namespace
}  // namespace nvhv::persistence
