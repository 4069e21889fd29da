// libFuzzer target: Image::open and load_checkpoint on arbitrary image metadata in a memory
// backing. The first input byte picks what the rest overwrites:
//   0: the raw header area;  1: header fields and identity text, with a valid header checksum;
//   2: slot A;  3: both slots — each as [flags][SlotHeader][payload], where flags ask for valid
//   payload/slot checksums so the decoder behind them is reached.
// Invariant checked whenever the image opens: a commit wins at the next open whatever the slots
// held (a torn or stale slot never does) unless it is refused untouched because a slot holds the
// last generation allowed, and once consumed it is not resumable.
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "persistence/image.hpp"
#include "vmm/base/log.hpp"

namespace {

using namespace nvhv::persistence;
using nlohmann::json;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

constexpr uint64_t kRam = 4096;
constexpr uint32_t kVcpus = 1;

std::vector<uint8_t> encoding(const MachineState& s) {
  std::vector<uint8_t> out;
  Encoder e(out);
  encode(e, s);
  return out;
}

struct World {
  json identity = {{"vcpus", kVcpus}, {"memory", kRam}};
  ImageGeometry geo = ImageGeometry::for_vm(kRam, kVcpus);
  Backing backing = Backing::anonymous(Image::required_size(geo));
  std::vector<uint8_t> formatted;  // metadata area of a freshly formatted image
  MachineState probe;
  std::vector<uint8_t> probe_bytes;

  World() {
    nvhv::log::set_level(nvhv::log::Level::error);
    Image::open(backing, identity, kRam, kVcpus);
    formatted.assign(backing.data(), backing.data() + geo.ram_offset);
    probe.saved_at_realtime_ns = 42;
    probe.vcpus.resize(1);
    probe.vcpus[0].regs.rip = 0xfff0;
    probe.vcpus[0].xsave.assign(64, 0xab);
    probe.vcpus[0].msrs.resize(2);
    probe.devices.push_back({"serial0", 1, {1, 2, 3}});
    probe_bytes = encoding(probe);
  }
};

World& world() {
  static World w;
  return w;
}

void write_slot(World& w, int i, const uint8_t* p, size_t n) {
  if (n == 0) return;
  const uint8_t flags = p[0];
  ++p, --n;
  uint8_t* base = w.backing.data() + w.geo.slot_offset[i];
  layout::SlotHeader h{};
  const size_t header_bytes = std::min(n, sizeof h);
  std::memcpy(&h, p, header_bytes);
  p += header_bytes, n -= header_bytes;
  const size_t payload = std::min<size_t>(n, w.geo.slot_capacity());
  std::memcpy(base + layout::kSlotHeaderRegion, p, payload);
  if (flags & 1) {
    h.payload_length = payload;
    h.payload_checksum = XXH3_64bits(base + layout::kSlotHeaderRegion, payload);
  }
  if (flags & 2) {
    h.slot_index = static_cast<uint32_t>(i);
    h.checksum = layout::slot_checksum(h);
  }
  if (flags & 4) h.consumed_at_ns = 0;
  std::memcpy(base, &h, sizeof h);
}

void write_header(World& w, const uint8_t* p, size_t n) {
  uint8_t* d = w.backing.data();
  const size_t fields = std::min<size_t>(n, offsetof(layout::ImageHeader, checksum) - 8);
  std::memcpy(d + 8, p, fields);
  p += fields, n -= fields;
  layout::ImageHeader h;
  std::memcpy(&h, d, sizeof h);
  if (n > 0) {
    n = std::min<size_t>(n, layout::kMaxIdentity);
    std::memcpy(d + layout::kIdentityOffset, p, n);
    h.identity_length = static_cast<uint32_t>(n);
  }
  h.checksum = layout::header_checksum(h, d + layout::kIdentityOffset);
  std::memcpy(d, &h, sizeof h);
}

void check_commit_wins(World& w, Image& img) {
  uint64_t gen = 0;
  const std::vector<uint8_t> before(w.backing.data(), w.backing.data() + w.geo.ram_offset);
  try {
    gen = img.commit(w.probe);
  } catch (const EncodeError&) {
    CHECK(img.geometry().slot_capacity() < w.probe_bytes.size());
    return;
  } catch (const ImageError& e) {
    // Refused only when a slot already holds the last generation allowed, before writing anything.
    CHECK(std::strstr(e.what(), "no further checkpoint can be committed") != nullptr);
    CHECK(std::memcmp(before.data(), w.backing.data(), before.size()) == 0);
    return;
  }
  Image again = Image::open(w.backing, w.identity, kRam, kVcpus);
  CHECK(again.status() == ImageStatus::resumable);
  CHECK(again.generation() == gen);
  CHECK(encoding(again.load_checkpoint()) == w.probe_bytes);
  again.mark_consumed();
  Image third = Image::open(w.backing, w.identity, kRam, kVcpus);
  CHECK(third.status() == ImageStatus::no_checkpoint);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = world();
  uint8_t* d = w.backing.data();
  const uint8_t mode = data[0] % 4;
  const uint8_t* rest = data + 1;
  const size_t n = size - 1;
  if (mode == 0) {
    std::memset(d, 0, w.geo.ram_offset);
    std::memcpy(d, rest, std::min<size_t>(n, w.geo.ram_offset));
  } else {
    std::memcpy(d, w.formatted.data(), w.formatted.size());
    if (mode == 1) write_header(w, rest, n);
    if (mode == 2) write_slot(w, 0, rest, n);
    if (mode == 3) {
      write_slot(w, 0, rest, n / 2);
      write_slot(w, 1, rest + n / 2, n - n / 2);
    }
  }

  try {
    Image img = Image::open(w.backing, w.identity, kRam, kVcpus);
    (void)img.reason();
    if (img.status() == ImageStatus::resumable) {
      try {
        const MachineState s = img.load_checkpoint();
        CHECK(s.vcpus.size() == kVcpus);
      } catch (const DecodeError&) {
      }
    }
    check_commit_wins(w, img);
  } catch (const ImageError&) {
  }
  return 0;
}
