// The VM image on real files: formatting, the commit protocol, torn and consumed slots, and
// refusals that leave the file exactly as it was.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "persistence/image.hpp"
#include "tests/unit/persistence_test_util.hpp"

namespace nvhv::persistence {
namespace {

using nlohmann::json;
using test::expect_same;
using test::sample_machine;

constexpr uint64_t kRam = 2 << 20;
constexpr uint32_t kVcpus = 2;

json identity(uint32_t vcpus = kVcpus, const std::string& serial_type = "16550") {
  return {{"vcpus", vcpus},
          {"memory", kRam},
          {"devices", json::array({{{"id", "serial0"}, {"type", serial_type}}})}};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class ImageTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string path = dir.file("vm.img");
  ImageGeometry geo = ImageGeometry::for_vm(kRam, kVcpus);

  Backing backing() { return Backing::open(path, Image::required_size(geo), true); }

  // Opens, runs `f` on the image, closes.
  template <typename F>
  void with_image(F&& f) {
    Backing b = backing();
    Image img = Image::open(b, identity(), kRam, kVcpus);
    f(img);
  }

  // Opens and closes; checks that only formatting wrote to the file.
  ImageStatus status_and_reason(std::string* reason = nullptr) {
    const uint64_t before = test::file_hash(path);
    ImageStatus status;
    {
      Backing b = backing();
      Image img = Image::open(b, identity(), kRam, kVcpus);
      if (reason) *reason = img.reason();
      status = img.status();
    }
    if (status != ImageStatus::fresh) {
      EXPECT_EQ(test::file_hash(path), before) << "open wrote to the image";
    }
    return status;
  }

  // Commits generation 1 (slot A) and 2 (slot B) with states seeded 1 and 2.
  void commit_two() {
    with_image([](Image& img) {
      EXPECT_EQ(img.commit(sample_machine(kVcpus, 1)), 1u);
      EXPECT_EQ(img.commit(sample_machine(kVcpus, 2)), 2u);
    });
  }

  void patch(uint64_t offset, const void* bytes, size_t n) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
    ::close(fd);
  }
  void flip(uint64_t offset, uint8_t mask = 0x10) {
    uint8_t b = test::read_file(path).at(offset);
    b ^= mask;
    patch(offset, &b, 1);
  }
  uint64_t slot(int i) const { return geo.slot_offset[i]; }

  // Opens with `id`/`ram`/`vcpus`, expects ImageError, and checks the file is byte-identical.
  std::string refused(const json& id = identity(), uint64_t ram = kRam, uint32_t vcpus = kVcpus) {
    const uint64_t before = test::file_hash(path);
    std::string msg;
    {
      Backing b = Backing::open(path, 0, false);
      try {
        Image::open(b, id, ram, vcpus);
        ADD_FAILURE() << "Image::open accepted the image";
      } catch (const ImageError& e) {
        msg = e.what();
      }
    }
    EXPECT_EQ(test::file_hash(path), before) << "refusing the image changed the file";
    EXPECT_TRUE(contains(msg, path)) << msg;
    return msg;
  }
};

TEST_F(ImageTest, NewFileIsFormattedDurably) {
  with_image([](Image& img) {
    EXPECT_EQ(img.status(), ImageStatus::fresh);
    EXPECT_EQ(img.geometry().ram_offset % (2 << 20), 0u);
    EXPECT_EQ(img.ram() - img.backing().data(), static_cast<std::ptrdiff_t>(img.geometry().ram_offset));
  });
  const auto bytes = test::read_file(path);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 7), "NVHVIMG");
  std::string reason;
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::no_checkpoint);
  EXPECT_TRUE(contains(reason, "never been checkpointed")) << reason;
}

TEST_F(ImageTest, CommitReopenLoadRoundTrip) {
  const MachineState state = sample_machine(kVcpus, 7);
  with_image([&](Image& img) {
    std::memcpy(img.ram() + 4096, "guest page", 10);
    img.prepare(state);
    img.persist_ram();
    EXPECT_EQ(img.commit(), 1u);
  });
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  EXPECT_EQ(img.generation(), 1u);
  EXPECT_TRUE(contains(img.reason(), "generation 1 in slot A")) << img.reason();
  expect_same(state, img.load_checkpoint());
  EXPECT_EQ(std::memcmp(img.ram() + 4096, "guest page", 10), 0);
}

TEST_F(ImageTest, ResumeCyclesAlternateSlots) {
  for (uint64_t gen = 1; gen <= 5; ++gen) {
    Backing b = backing();
    Image img = Image::open(b, identity(), kRam, kVcpus);
    if (gen > 1) {
      ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
      EXPECT_EQ(img.generation(), gen - 1);
      const char slot = (gen - 1) % 2 == 1 ? 'A' : 'B';
      EXPECT_TRUE(contains(img.reason(), std::string("in slot ") + slot)) << img.reason();
      expect_same(sample_machine(kVcpus, gen - 1), img.load_checkpoint());
      img.mark_consumed();
    }
    EXPECT_EQ(img.commit(sample_machine(kVcpus, gen)), gen);
  }
}

TEST_F(ImageTest, CorruptPayloadOfNewestMeansNoCheckpointNotAnOlderOne) {
  commit_two();
  flip(slot(1) + layout::kSlotHeaderRegion + 100);
  std::string reason;
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::no_checkpoint);
  EXPECT_TRUE(contains(reason, "generation 2 in slot B) is corrupt: payload checksum mismatch")) << reason;
}

TEST_F(ImageTest, TornHeaderFallsBackToTheOtherCommittedSlot) {
  commit_two();
  flip(slot(1) + offsetof(layout::SlotHeader, payload_length));
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  EXPECT_EQ(img.generation(), 1u);
  EXPECT_TRUE(contains(img.reason(), "slot B is torn")) << img.reason();
  expect_same(sample_machine(kVcpus, 1), img.load_checkpoint());
  // The next commit must not trust the torn slot's generation, and must not overwrite slot A.
  EXPECT_EQ(img.commit(sample_machine(kVcpus, 3)), 2u);
}

TEST_F(ImageTest, GenerationNeverStoredFallsBack) {
  commit_two();
  const uint64_t zero = 0;
  patch(slot(1) + offsetof(layout::SlotHeader, generation), &zero, sizeof zero);
  std::string reason;
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::resumable);
  EXPECT_TRUE(contains(reason, "generation 1 in slot A")) << reason;
  EXPECT_TRUE(contains(reason, "slot B holds a commit that never completed")) << reason;
}

TEST_F(ImageTest, PartiallyWrittenGenerationIsTorn) {
  commit_two();
  const uint32_t half = 0xffff;
  patch(slot(1) + offsetof(layout::SlotHeader, generation) + 4, &half, sizeof half);
  std::string reason;
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::resumable);
  EXPECT_TRUE(contains(reason, "generation 1 in slot A")) << reason;
  EXPECT_TRUE(contains(reason, "slot B is torn")) << reason;
}

// A slot header with a valid checksum and the largest generation open() accepts (found by
// fuzz.persistence_image): a further commit could never be found again, so it is refused and
// the checkpoint there stays in force.
TEST_F(ImageTest, LastAllowedGenerationRefusesFurtherCommitsAndKeepsTheCheckpoint) {
  commit_two();
  layout::SlotHeader h;
  const auto bytes = test::read_file(path);
  std::memcpy(&h, bytes.data() + slot(1), sizeof h);
  h.generation = uint64_t{1} << 62;
  h.checksum = layout::slot_checksum(h);
  patch(slot(1), &h, sizeof h);
  {
    Backing b = backing();
    Image img = Image::open(b, identity(), kRam, kVcpus);
    ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
    EXPECT_EQ(img.generation(), uint64_t{1} << 62);
    try {
      img.commit(sample_machine(kVcpus, 3));
      ADD_FAILURE() << "a commit beyond the last allowed generation was accepted";
    } catch (const ImageError& e) {
      EXPECT_TRUE(contains(e.what(), "no further checkpoint can be committed: slot B holds generation 4611686018427387904"))
          << e.what();
    }
  }
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  expect_same(sample_machine(kVcpus, 2), img.load_checkpoint());
}

TEST_F(ImageTest, PrepareWithoutCommitKeepsThePreviousCheckpoint) {
  with_image([](Image& img) {
    img.commit(sample_machine(kVcpus, 1));
    img.prepare(sample_machine(kVcpus, 2));  // power lost before commit()
  });
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  expect_same(sample_machine(kVcpus, 1), img.load_checkpoint());
}

TEST_F(ImageTest, ConsumedCheckpointIsNotResumedAgain) {
  with_image([](Image& img) { img.commit(sample_machine(kVcpus, 1)); });
  with_image([](Image& img) {
    ASSERT_EQ(img.status(), ImageStatus::resumable);
    img.load_checkpoint();
    img.mark_consumed();
    EXPECT_EQ(img.status(), ImageStatus::no_checkpoint);
  });
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  EXPECT_EQ(img.status(), ImageStatus::no_checkpoint);
  EXPECT_TRUE(contains(img.reason(), "was consumed by a resume at")) << img.reason();
  EXPECT_TRUE(contains(img.reason(), "stopped without a new checkpoint")) << img.reason();
  EXPECT_THROW(img.load_checkpoint(), ImageError);
  EXPECT_EQ(img.commit(sample_machine(kVcpus, 2)), 2u);
  EXPECT_TRUE(contains(img.reason(), "slot B")) << img.reason();
}

TEST_F(ImageTest, InterruptedCommitAfterConsumedResume) {
  with_image([](Image& img) { img.commit(sample_machine(kVcpus, 1)); });
  with_image([](Image& img) {
    img.mark_consumed();
    img.prepare(sample_machine(kVcpus, 2));  // power lost mid-commit
  });
  std::string reason;
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::no_checkpoint);
  EXPECT_TRUE(contains(reason, "consumed by a resume")) << reason;
  EXPECT_TRUE(contains(reason, "slot B holds a commit that never completed")) << reason;

  flip(slot(1) + offsetof(layout::SlotHeader, checksum));
  const uint64_t one = 1;
  patch(slot(1) + offsetof(layout::SlotHeader, generation), &one, sizeof one);
  EXPECT_EQ(status_and_reason(&reason), ImageStatus::no_checkpoint);
  EXPECT_TRUE(contains(reason, "slot B is torn")) << reason;
}

TEST_F(ImageTest, StateTooLargeForTheSlotKeepsThePreviousCheckpoint) {
  with_image([](Image& img) {
    img.commit(sample_machine(kVcpus, 1));
    MachineState huge = sample_machine(kVcpus, 2);
    huge.devices[0].data.resize(img.geometry().slot_capacity());
    EXPECT_THROW(img.prepare(huge), EncodeError);
    EXPECT_THROW(img.commit(), std::logic_error);
  });
  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus);
  ASSERT_EQ(img.status(), ImageStatus::resumable) << img.reason();
  expect_same(sample_machine(kVcpus, 1), img.load_checkpoint());
}

TEST_F(ImageTest, WrongVcpuCountIsNotCommitted) {
  with_image([](Image& img) { EXPECT_THROW(img.prepare(sample_machine(1, 1)), std::invalid_argument); });
}

TEST_F(ImageTest, TruncatedFileIsRefused) {
  with_image([](Image& img) { img.commit(sample_machine(kVcpus, 1)); });
  std::filesystem::resize_file(path, geo.ram_offset + 4096);
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  EXPECT_TRUE(contains(msg, std::to_string(geo.total_size()))) << msg;
}

TEST_F(ImageTest, WrongMagicIsRefusedUnlessFormatAllowed) {
  with_image([](Image&) {});
  flip(0, 0x01);
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "not an nvhv image (magic bytes 4f5648")) << msg;

  Backing b = backing();
  Image img = Image::open(b, identity(), kRam, kVcpus, Image::Options{true});
  EXPECT_EQ(img.status(), ImageStatus::fresh);
}

TEST_F(ImageTest, ForeignDataWithoutMagicIsRefused) {
  { Backing b = backing(); }
  const char mbr_like[] = "\0\0\0\0\0\0\0\0 some bootloader";
  patch(0, mbr_like, sizeof mbr_like);
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "no magic, and the header area is not blank")) << msg;
}

TEST_F(ImageTest, InterruptedFormatIsRedone) {
  with_image([](Image&) {});
  const char zeros[8] = {};
  patch(0, zeros, sizeof zeros);  // magic is written last
  EXPECT_EQ(status_and_reason(), ImageStatus::fresh);
  EXPECT_EQ(status_and_reason(), ImageStatus::no_checkpoint);
}

TEST_F(ImageTest, OtherVmIdentityIsRefusedWithTheDifferences) {
  with_image([](Image& img) { img.commit(sample_machine(kVcpus, 1)); });
  std::string msg = refused(identity(1), kRam, 1);
  EXPECT_TRUE(contains(msg, "vcpus: image has 2, config has 1")) << msg;
  msg = refused(identity(kVcpus, "virtio-console"));
  EXPECT_TRUE(contains(msg, R"(devices[0].type: image has "16550", config has "virtio-console")")) << msg;
}

TEST_F(ImageTest, GeometryMismatchIsRefused) {
  { Backing b = Backing::open(path, 4 << 20 | geo.ram_offset, true); }
  with_image([](Image&) {});
  const std::string msg = refused(identity(), 4 << 20);
  EXPECT_TRUE(contains(msg, "geometry does not match")) << msg;
}

TEST_F(ImageTest, UnsupportedFormatVersionIsRefused) {
  with_image([](Image&) {});
  const uint32_t v2 = 2;
  patch(offsetof(layout::ImageHeader, format_version), &v2, sizeof v2);
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "format version 2 is not supported")) << msg;
}

TEST_F(ImageTest, CorruptHeaderIsRefused) {
  with_image([](Image&) {});
  flip(layout::kIdentityOffset + 3);
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "header is corrupt (checksum mismatch)")) << msg;
}

TEST_F(ImageTest, BackingTooSmallToFormatIsRefused) {
  { Backing b = Backing::open(path, 1 << 20, true); }
  const std::string msg = refused();
  EXPECT_TRUE(contains(msg, "cannot format")) << msg;
}

TEST(ImageOnMemory, CommitAndReopenOnTheSameBacking) {
  const ImageGeometry geo = ImageGeometry::for_vm(kRam, 1);
  Backing b = Backing::anonymous(Image::required_size(geo));
  {
    Image img = Image::open(b, identity(1), kRam, 1);
    EXPECT_EQ(img.status(), ImageStatus::fresh);
    img.commit(sample_machine(1, 4));
  }
  Image img = Image::open(b, identity(1), kRam, 1);
  ASSERT_EQ(img.status(), ImageStatus::resumable);
  expect_same(sample_machine(1, 4), img.load_checkpoint());
}

TEST(ImageGeometryTest, SlotsGrowWithVcpusAndRamStaysHugePageAligned) {
  const ImageGeometry one = ImageGeometry::for_vm(kRam, 1);
  const ImageGeometry many = ImageGeometry::for_vm(kRam, 64);
  EXPECT_GE(one.slot_capacity(), 256u * 1024 + 64 * 1024);
  EXPECT_GE(many.slot_capacity(), 256u * 1024 + 64u * 64 * 1024);
  EXPECT_EQ(many.ram_offset % (2 << 20), 0u);
  EXPECT_GE(many.ram_offset, many.slot_offset[1] + many.slot_size);
  EXPECT_THROW(ImageGeometry::for_vm(kRam + 1, 1), ConfigError);
  EXPECT_THROW(ImageGeometry::for_vm(kRam, 0), ConfigError);
}

}  // namespace
}  // namespace nvhv::persistence
