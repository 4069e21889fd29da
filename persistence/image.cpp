#include "persistence/image.hpp"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>

#include <fmt/core.h>

#include "persistence/identity.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"
#include "vmm/base/wall_clock.hpp"

namespace nvhv::persistence {
namespace {

using namespace layout;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxRam = uint64_t{1} << 48;
constexpr uint64_t kMaxSlot = 1024 * kMiB;
// Far beyond any real count of commits; refusing more keeps next_generation_ from wrapping to 0.
constexpr uint64_t kMaxGeneration = uint64_t{1} << 62;

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool all_zero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

char slot_name(int i) { return i == 0 ? 'A' : 'B'; }

SwapRecord read_swap_record(const uint8_t* d) {
  SwapRecord r;
  std::memcpy(&r, d + kSwapRecordOffset, sizeof r);
  return r;
}

// Blank apart from swap record fields that an interrupted mark_incoming() may have stored
// before its state: such a backing still holds nothing.
bool blank_header_area(const uint8_t* d, const SwapRecord& r) {
  constexpr uint64_t end = kSwapRecordOffset + sizeof(SwapRecord);
  return r.state != kSwapIncoming && all_zero(d, kSwapRecordOffset) && all_zero(d + end, kHeaderRegion - end);
}

bool header_sizes_sane(const ImageHeader& h) {
  return h.header_size == sizeof h && h.header_region == kHeaderRegion && h.identity_length <= kMaxIdentity;
}

std::string format_time(uint64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000u);
  tm t{};
  char buf[64];
  if (!::gmtime_r(&secs, &t) || std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &t) == 0)
    return fmt::format("{} ns since the epoch", ns);
  return buf;
}

// What open() concluded about the bytes it found, before touching anything.
struct Verdict {
  enum Kind { valid, blank, invalid } kind;
  std::string message;
  ImageGeometry geometry;
};

Verdict inspect(const Backing& backing, const std::string& canonical, const nlohmann::json& identity,
                const ImageGeometry& want, bool ignore_swap_state) {
  const uint8_t* d = backing.data();
  if (backing.size() < kHeaderRegion)
    return {Verdict::invalid, fmt::format("too small for an image header: {} bytes", backing.size()), {}};
  ImageHeader h;
  std::memcpy(&h, d, sizeof h);
  const uint8_t* ident = d + kIdentityOffset;
  const bool sane_sizes = header_sizes_sane(h);
  const SwapRecord swap = read_swap_record(d);

  if (all_zero(reinterpret_cast<const uint8_t*>(h.magic), sizeof h.magic)) {
    // A swap-in marks its target before formatting it: until published it is not a VM to boot.
    if (swap.state == kSwapIncoming) return {Verdict::invalid, describe_swap_record(swap), {}};
    if (blank_header_area(d, swap)) return {Verdict::blank, "the header area is blank", {}};
    // Formatting writes the magic last; a complete header without it is our own interrupted format.
    if (h.format_version == kFormatVersion && sane_sizes && header_checksum(h, ident) == h.checksum)
      return {Verdict::blank, "an earlier format was interrupted", {}};
    return {Verdict::invalid, "it is not an nvhv image (no magic, and the header area is not blank)", {}};
  }
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
    std::string shown;
    for (char c : h.magic) shown += fmt::format("{:02x}", static_cast<uint8_t>(c));
    return {Verdict::invalid, fmt::format("it is not an nvhv image (magic bytes {}, expected 4e5648564d494700)", shown), {}};
  }
  if (h.format_version != kFormatVersion)
    return {Verdict::invalid,
            fmt::format("image format version {} is not supported (this nvhv reads version {})", h.format_version,
                        kFormatVersion),
            {}};
  if (!sane_sizes)
    return {Verdict::invalid,
            fmt::format("the image header is corrupt (header size {}, region {}, identity length {})", h.header_size,
                        h.header_region, h.identity_length),
            {}};
  if (header_checksum(h, ident) != h.checksum)
    return {Verdict::invalid, "the image header is corrupt (checksum mismatch)", {}};
  if (swap.state != kSwapInUse && !ignore_swap_state) return {Verdict::invalid, describe_swap_record(swap), {}};

  ImageGeometry g;
  g.ram_size = h.ram_size;
  g.vcpus = h.vcpus;
  g.slot_offset[0] = h.slot_offset[0];
  g.slot_offset[1] = h.slot_offset[1];
  g.slot_size = h.slot_size;
  g.ram_offset = h.ram_offset;
  const uint64_t lo = std::min(g.slot_offset[0], g.slot_offset[1]);
  const uint64_t hi = std::max(g.slot_offset[0], g.slot_offset[1]);
  const bool geometry_ok = g.vcpus >= 1 && g.vcpus <= kMaxVcpus && g.ram_size > 0 && g.ram_size % kPage == 0 &&
                           g.ram_size <= kMaxRam && g.slot_size > kSlotHeaderRegion && g.slot_size % kPage == 0 &&
                           g.slot_size <= kMaxSlot && lo >= kHeaderRegion && lo % kPage == 0 && hi % kPage == 0 &&
                           hi - lo >= g.slot_size && hi <= kMaxRam && hi + g.slot_size <= g.ram_offset &&
                           g.ram_offset % kRamAlignment == 0 && g.ram_offset <= kMaxRam;
  if (!geometry_ok)
    return {Verdict::invalid,
            fmt::format("the image header is corrupt (inconsistent geometry: slots at {:#x}/{:#x} of {:#x} bytes, "
                        "RAM {:#x} bytes at {:#x}, {} vCPUs)",
                        g.slot_offset[0], g.slot_offset[1], g.slot_size, g.ram_size, g.ram_offset, g.vcpus),
            {}};
  if (g.total_size() > backing.size())
    return {Verdict::invalid,
            fmt::format("the image is truncated: its header describes {} bytes (RAM of {} bytes at offset {}) but "
                        "the backing has {}",
                        g.total_size(), g.ram_size, g.ram_offset, backing.size()),
            {}};

  const bool same_identity = h.identity_length == canonical.size() && h.identity_hash == identity_hash(canonical) &&
                             std::memcmp(ident, canonical.data(), canonical.size()) == 0;
  if (!same_identity) {
    std::string what;
    try {
      auto stored = nlohmann::json::parse(ident, ident + h.identity_length);
      for (const std::string& line : identity_differences(stored, identity)) what += (what.empty() ? "" : "; ") + line;
    } catch (const nlohmann::json::exception&) {
      what = "its stored identity is not valid JSON";
    }
    if (what.empty()) what = "the identity text differs";
    return {Verdict::invalid, fmt::format("the image belongs to a different VM configuration: {}", what), {}};
  }
  if (g.ram_size != want.ram_size || g.vcpus != want.vcpus)
    return {Verdict::invalid,
            fmt::format("image geometry does not match the config: image has {} bytes of RAM and {} vCPUs, config "
                        "asks for {} bytes and {}",
                        g.ram_size, g.vcpus, want.ram_size, want.vcpus),
            {}};
  return {Verdict::valid, {}, g};
}

}  // namespace

namespace layout {

uint64_t header_checksum(const ImageHeader& h, const uint8_t* identity_text) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&h);
  const size_t begin = offsetof(ImageHeader, format_version);
  const uint64_t fields = XXH3_64bits(bytes + begin, offsetof(ImageHeader, checksum) - begin);
  return XXH3_64bits_withSeed(identity_text, std::min<uint64_t>(h.identity_length, kMaxIdentity), fields);
}

uint64_t slot_checksum(const SlotHeader& s) { return XXH3_64bits(&s, offsetof(SlotHeader, checksum)); }

}  // namespace layout

const char* to_string(ImageStatus s) {
  switch (s) {
    case ImageStatus::fresh: return "fresh";
    case ImageStatus::resumable: return "resumable";
    case ImageStatus::no_checkpoint: return "no_checkpoint";
  }
  return "?";
}

ImageGeometry ImageGeometry::for_vm(uint64_t ram_size, uint32_t vcpus) {
  if (vcpus == 0 || vcpus > kMaxVcpus)
    throw ConfigError(fmt::format("vcpus: {} is outside 1..{}", vcpus, kMaxVcpus));
  if (ram_size == 0 || ram_size % kPage != 0 || ram_size > kMaxRam)
    throw ConfigError(fmt::format("memory: {} bytes is not a positive multiple of 4 KiB up to 256 TiB", ram_size));
  ImageGeometry g;
  g.ram_size = ram_size;
  g.vcpus = vcpus;
  g.slot_size = round_up(kSlotHeaderRegion + kSlotBase + kSlotPerVcpu * vcpus, kSlotGranule);
  g.slot_offset[0] = kHeaderRegion;
  g.slot_offset[1] = kHeaderRegion + g.slot_size;
  g.ram_offset = round_up(g.slot_offset[1] + g.slot_size, kRamAlignment);
  return g;
}

Image Image::open(Backing& backing, const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus,
                  Options options) {
  const ImageGeometry want = ImageGeometry::for_vm(ram_size, vcpus);
  const std::string canonical = canonical_identity(identity);
  if (canonical.size() > kMaxIdentity)
    throw ConfigError(fmt::format("the VM identity is {} bytes of JSON; an image holds at most {}", canonical.size(),
                                  kMaxIdentity));
  Image img;
  img.backing_ = &backing;
  const Verdict v = inspect(backing, canonical, identity, want, options.ignore_swap_state);
  if (v.kind == Verdict::valid) {
    img.geo_ = v.geometry;
    img.evaluate_slots();
    log::info("image {}: {}: {}", backing.path(), to_string(img.status_), img.reason());
    return img;
  }
  if (v.kind == Verdict::invalid && !options.allow_format)
    throw ImageError(fmt::format("cannot use {} as a VM image: {}", backing.path(), v.message));
  if (backing.size() < want.total_size())
    throw ImageError(fmt::format("cannot format {}: it has {} bytes but this VM needs {}", backing.path(),
                                 backing.size(), want.total_size()));
  // A swap-in marks its target incoming before formatting it: that is no loss worth a warning.
  const bool for_swap_in = read_swap_record(backing.data()).state == kSwapIncoming;
  if (v.kind == Verdict::invalid && !for_swap_in)
    log::warn("formatting {} as asked, discarding its contents: {}", backing.path(), v.message);
  img.format(want, canonical);
  log::info("image {}: formatted ({}; {} vCPUs, {} bytes of RAM at offset {})", backing.path(),
            for_swap_in ? "for a swap-in" : v.message, vcpus, ram_size, want.ram_offset);
  return img;
}

void Image::format(const ImageGeometry& geo, const std::string& canonical) {
  geo_ = geo;
  uint8_t* d = backing_->data();
  ImageHeader h{};
  h.format_version = kFormatVersion;
  h.header_size = sizeof h;
  h.header_region = kHeaderRegion;
  h.slot_offset[0] = geo.slot_offset[0];
  h.slot_offset[1] = geo.slot_offset[1];
  h.slot_size = geo.slot_size;
  h.ram_offset = geo.ram_offset;
  h.ram_size = geo.ram_size;
  h.vcpus = geo.vcpus;
  h.identity_length = static_cast<uint32_t>(canonical.size());
  h.identity_hash = identity_hash(canonical);
  h.created_realtime_ns = realtime_ns();
  // A swap-in formats the target it marked incoming: the mark must survive, so that the image
  // stays refused by a plain open until the swap-in publishes it. Anything else is cleared.
  const SwapRecord swap = read_swap_record(d);
  std::memset(d, 0, kHeaderRegion);
  if (swap.state == kSwapIncoming) std::memcpy(d + kSwapRecordOffset, &swap, sizeof swap);
  std::memcpy(d + kIdentityOffset, canonical.data(), canonical.size());
  h.checksum = header_checksum(h, d + kIdentityOffset);
  std::memcpy(d, &h, sizeof h);
  // Whole slots, not just their headers: on a filesystem this also turns fallocate's unwritten
  // extents into written ones now, instead of in the first power-fail commit.
  for (int i = 0; i < 2; ++i) std::memset(d + geo.slot_offset[i], 0, geo.slot_size);

  backing_->flush(d, kHeaderRegion);
  for (int i = 0; i < 2; ++i) backing_->flush(d + geo.slot_offset[i], geo.slot_size);
  backing_->drain();
  // The magic goes last so a crash mid-format leaves a recognisably unfinished header.
  std::memcpy(d, kMagic, sizeof kMagic);
  backing_->persist(d, sizeof kMagic);

  status_ = ImageStatus::fresh;
  reason_ = "the image was formatted now";
  generation_ = 0;
  active_ = -1;
  target_ = 0;
  next_generation_ = 1;
}

SlotHeader& Image::slot_header(int i) const {
  return *reinterpret_cast<SlotHeader*>(backing_->data() + geo_.slot_offset[i]);
}

uint8_t* Image::payload(int i) const { return backing_->data() + geo_.slot_offset[i] + kSlotHeaderRegion; }

void Image::evaluate_slots() {
  enum State { empty, interrupted, torn, bad_payload, committed, consumed };
  struct View {
    State state = empty;
    SlotHeader h{};
    std::string problem;
  } slot[2];

  for (int i = 0; i < 2; ++i) {
    View& s = slot[i];
    std::memcpy(&s.h, &slot_header(i), sizeof s.h);
    if (s.h.generation == 0) {
      s.state = all_zero(reinterpret_cast<const uint8_t*>(&s.h), sizeof s.h) ? empty : interrupted;
    } else if (slot_checksum(s.h) != s.h.checksum || s.h.slot_index != static_cast<uint32_t>(i) ||
               s.h.generation > kMaxGeneration) {
      s.state = torn;
    } else if (s.h.payload_length > geo_.slot_capacity()) {
      s.state = bad_payload;
      s.problem = fmt::format("payload length {} exceeds the slot", s.h.payload_length);
    } else if (XXH3_64bits(payload(i), s.h.payload_length) != s.h.payload_checksum) {
      s.state = bad_payload;
      s.problem = "payload checksum mismatch";
    } else {
      s.state = s.h.consumed_at_ns ? consumed : committed;
    }
  }
  auto has_header = [&](int i) { return slot[i].state >= bad_payload; };

  int newest = -1;
  uint64_t max_gen = 0;
  for (int i = 0; i < 2; ++i)
    if (has_header(i) && slot[i].h.generation > max_gen) {
      max_gen = slot[i].h.generation;
      newest = i;
    }
  // A torn slot's generation is never trusted, so it cannot outrank (or be outranked into) anything.
  next_generation_ = max_gen + 1;
  target_ = newest < 0 ? 0 : 1 - newest;
  const bool tie = has_header(0) && has_header(1) && slot[0].h.generation == slot[1].h.generation;

  auto describe_other = [&](int i) -> std::string {
    const View& s = slot[i];
    const char n = slot_name(i);
    switch (s.state) {
      case empty: return "";
      case interrupted: return fmt::format("slot {} holds a commit that never completed", n);
      case torn: return fmt::format("slot {} is torn (header checksum mismatch: an interrupted commit or corruption)", n);
      case bad_payload: return fmt::format("slot {} (generation {}) is corrupt: {}", n, s.h.generation, s.problem);
      case committed:
        return fmt::format("slot {} holds an older checkpoint (generation {}) that is superseded", n, s.h.generation);
      case consumed: return "";
    }
    return "";
  };

  std::string main;
  if (tie) {
    status_ = ImageStatus::no_checkpoint;
    main = fmt::format("both slots claim generation {}; the image is corrupt", max_gen);
  } else if (newest < 0) {
    status_ = ImageStatus::no_checkpoint;
    main = slot[0].state == empty && slot[1].state == empty ? "the image has never been checkpointed"
                                                            : "no slot holds a complete checkpoint";
  } else {
    const View& s = slot[newest];
    const char n = slot_name(newest);
    if (s.state == committed) {
      status_ = ImageStatus::resumable;
      generation_ = s.h.generation;
      active_ = newest;
      main = fmt::format("checkpoint generation {} in slot {}, saved at {}", s.h.generation, n,
                         format_time(s.h.saved_realtime_ns));
    } else if (s.state == consumed) {
      status_ = ImageStatus::no_checkpoint;
      generation_ = s.h.generation;
      main = fmt::format("the last checkpoint (generation {} in slot {}, saved at {}) was consumed by a resume at {}; "
                         "the VM stopped without a new checkpoint",
                         s.h.generation, n, format_time(s.h.saved_realtime_ns), format_time(s.h.consumed_at_ns));
    } else {
      status_ = ImageStatus::no_checkpoint;
      main = fmt::format("the last checkpoint (generation {} in slot {}) is corrupt: {}; the older slot is not "
                         "used because guest RAM has moved on since it",
                         s.h.generation, n, s.problem);
    }
  }
  reason_ = main;
  for (int i = 0; i < 2; ++i) {
    if (i == newest || tie) continue;
    if (std::string other = describe_other(i); !other.empty()) reason_ += "; " + other;
  }
}

std::string Image::reason() const {
  if (!reason_.empty() || status_ != ImageStatus::resumable) return reason_;
  return fmt::format("checkpoint generation {} in slot {}, saved at {}", generation_, slot_name(active_),
                     format_time(slot_header(active_).saved_realtime_ns));
}

MachineState Image::load_checkpoint() const {
  if (status_ != ImageStatus::resumable)
    throw ImageError(fmt::format("{}: no checkpoint to load: {}", backing_->path(), reason()));
  const SlotHeader& h = slot_header(active_);
  const uint64_t length = h.payload_length;
  if (length > geo_.slot_capacity() || XXH3_64bits(payload(active_), length) != h.payload_checksum)
    throw ImageError(fmt::format("{}: checkpoint in slot {} changed since the image was opened", backing_->path(),
                                 slot_name(active_)));
  MachineState state = decode_machine_state(
      {payload(active_), length}, fmt::format("checkpoint (slot {}, generation {})", slot_name(active_), generation_));
  if (state.vcpus.size() != geo_.vcpus)
    throw DecodeError(fmt::format("checkpoint (slot {}, generation {}): has {} vCPUs, the image has {}",
                                  slot_name(active_), generation_, state.vcpus.size(), geo_.vcpus));
  return state;
}

void Image::prepare(const MachineState& state) {
  if (state.vcpus.size() != geo_.vcpus)
    throw std::invalid_argument(
        fmt::format("checkpoint has {} vCPUs but the image has {}", state.vcpus.size(), geo_.vcpus));
  // open() takes a slot whose generation is beyond the limit as torn, so such a commit would
  // never be found again: refuse it while the previous checkpoint is still intact. Only a forged
  // or corrupted slot header (with a valid checksum) gets here; 2^62 real commits cannot.
  if (next_generation_ > kMaxGeneration)
    throw ImageError(fmt::format("{}: no further checkpoint can be committed: slot {} holds generation {}, the last "
                                 "one allowed (a corrupt or forged slot header)",
                                 backing_->path(), slot_name(1 - target_), next_generation_ - 1));
  prepared_ = false;
  SlotHeader& h = slot_header(target_);
  // The target is never the newest valid slot, so its old contents cannot win even while it is
  // half rewritten; a zero generation also tells open() this is an unfinished commit.
  std::atomic_ref<uint64_t>(h.generation).store(0, std::memory_order_relaxed);
  uint8_t* p = payload(target_);
  Encoder enc(std::span<uint8_t>(p, geo_.slot_capacity()));
  try {
    encode(enc, state);
  } catch (const EncodeError& e) {
    throw EncodeError(fmt::format("checkpoint does not fit slot {}: {}", slot_name(target_), e.what()));
  }
  // Every header field now, checksummed as if the generation were already stored: the checksum
  // cannot match until commit() stores it, so these need no ordering of their own.
  SlotHeader next{};
  next.generation = next_generation_;
  next.payload_length = enc.size();
  next.payload_checksum = XXH3_64bits(p, enc.size());
  next.saved_realtime_ns = state.saved_at_realtime_ns;
  next.slot_index = static_cast<uint32_t>(target_);
  next.checksum = slot_checksum(next);
  h.payload_length = next.payload_length;
  h.payload_checksum = next.payload_checksum;
  h.saved_realtime_ns = next.saved_realtime_ns;
  h.slot_index = next.slot_index;
  h.reserved = 0;
  h.checksum = next.checksum;
  h.consumed_at_ns = 0;
  h.committed_at_ns = 0;
  if (backing_->granularity() == Granularity::page) {
    // The payload starts on the page after the header: one msync (a synchronous write-back
    // each) covers both.
    backing_->persist(&h, kSlotHeaderRegion + next.payload_length);
  } else {
    backing_->flush(&h, sizeof h);
    backing_->flush(p, next.payload_length);
    backing_->drain();
  }
  prepared_ = true;
}

uint64_t Image::commit() {
  if (!prepared_) throw std::logic_error("Image::commit() without prepare()");
  SlotHeader& h = slot_header(target_);
  // The commit point: one aligned 8-byte store, which power loss cannot tear.
  std::atomic_ref<uint64_t>(h.generation).store(next_generation_, std::memory_order_release);
  backing_->persist(&h.generation, sizeof h.generation);
  // After the commit point and outside the checksum, so it cannot delay or endanger the commit:
  // when it committed, for the operator (a hold-up window is judged against it).
  std::atomic_ref<uint64_t>(h.committed_at_ns).store(realtime_ns(), std::memory_order_release);
  backing_->persist(&h.committed_at_ns, sizeof h.committed_at_ns);

  prepared_ = false;
  generation_ = next_generation_;
  active_ = target_;
  target_ = 1 - target_;
  next_generation_ = generation_ + 1;
  status_ = ImageStatus::resumable;
  reason_.clear();  // described on demand: no allocation on the power-fail path
  return generation_;
}

uint64_t Image::committed_at_ns() const {
  return status_ == ImageStatus::resumable ? slot_header(active_).committed_at_ns : 0;
}

uint64_t Image::saved_at_ns() const {
  return status_ == ImageStatus::resumable ? slot_header(active_).saved_realtime_ns : 0;
}

void Image::mark_consumed() {
  if (status_ != ImageStatus::resumable) throw std::logic_error("Image::mark_consumed() without a resumable checkpoint");
  SlotHeader& h = slot_header(active_);
  const uint64_t now = std::max<uint64_t>(realtime_ns(), 1);
  std::atomic_ref<uint64_t>(h.consumed_at_ns).store(now, std::memory_order_release);
  backing_->persist(&h.consumed_at_ns, sizeof h.consumed_at_ns);
  status_ = ImageStatus::no_checkpoint;
  reason_ = fmt::format("the last checkpoint (generation {} in slot {}, saved at {}) was consumed by a resume at {}; "
                        "the VM stopped without a new checkpoint",
                        generation_, slot_name(active_), format_time(h.saved_realtime_ns), format_time(now));
}

std::span<const uint8_t> Image::checkpoint_payload() const {
  if (status_ != ImageStatus::resumable)
    throw ImageError(fmt::format("{}: no checkpoint to read: {}", backing_->path(), reason()));
  const SlotHeader& h = slot_header(active_);
  if (h.payload_length > geo_.slot_capacity() || XXH3_64bits(payload(active_), h.payload_length) != h.payload_checksum)
    throw ImageError(fmt::format("{}: checkpoint in slot {} changed since the image was opened", backing_->path(),
                                 slot_name(active_)));
  return {payload(active_), h.payload_length};
}

SwapRecord& Image::swap_fields() const { return *reinterpret_cast<SwapRecord*>(backing_->data() + kSwapRecordOffset); }

SwapRecord Image::swap_record() const { return read_swap_record(backing_->data()); }

namespace {

// The record's other fields first (ignored while `state` says otherwise), then `state`, the one
// store that changes what the image is; each step durable before the next.
void store_swap_state(Backing& b, SwapRecord& r, const SwapRecord& next) {
  auto store = [](uint64_t& field, uint64_t v) { std::atomic_ref<uint64_t>(field).store(v, std::memory_order_release); };
  store(r.peer_id, next.peer_id);
  store(r.peer_path_hash, next.peer_path_hash);
  store(r.origin_id, next.origin_id);
  store(r.changed_at_ns, next.changed_at_ns);
  b.persist(&r, sizeof r);
  store(r.state, next.state);
  b.persist(&r.state, sizeof r.state);
}

}  // namespace

void Image::begin_swap_out(uint64_t swap_id, uint64_t swap_path_hash) {
  SwapRecord& r = swap_fields();
  if (r.state == kSwapOutgoing && r.peer_id == swap_id) return;  // a rerun
  if (r.state != kSwapInUse) throw std::logic_error("Image::begin_swap_out() on an image that is not in use");
  SwapRecord next = r;
  next.state = kSwapOutgoing;
  next.peer_id = swap_id;
  next.peer_path_hash = swap_path_hash;
  next.changed_at_ns = realtime_ns();
  store_swap_state(*backing_, r, next);
}

void Image::finish_swap_out() {
  SwapRecord& r = swap_fields();
  if (r.state != kSwapOutgoing) throw std::logic_error("Image::finish_swap_out() without begin_swap_out()");
  SwapRecord next = r;
  next.state = kSwapReleased;
  next.changed_at_ns = realtime_ns();
  store_swap_state(*backing_, r, next);
}

void Image::publish_swap_in() {
  SwapRecord& r = swap_fields();
  if (r.state != kSwapIncoming) throw std::logic_error("Image::publish_swap_in() on an image that is not incoming");
  SwapRecord next = r;
  next.state = kSwapInUse;
  next.origin_id = r.peer_id;
  next.changed_at_ns = realtime_ns();
  store_swap_state(*backing_, r, next);
}

void Image::mark_incoming(Backing& backing, uint64_t swap_id, uint64_t swap_path_hash) {
  if (backing.size() < kHeaderRegion) throw std::logic_error("Image::mark_incoming() on a backing without a header area");
  SwapRecord& r = *reinterpret_cast<SwapRecord*>(backing.data() + kSwapRecordOffset);
  if (r.state == kSwapIncoming && r.peer_id == swap_id) return;
  SwapRecord next{};
  next.state = kSwapIncoming;
  next.peer_id = swap_id;
  next.peer_path_hash = swap_path_hash;
  next.changed_at_ns = realtime_ns();
  store_swap_state(backing, r, next);
}

ImageProbe probe_image(const uint8_t* d, size_t size) {
  ImageProbe p;
  if (size < kHeaderRegion) return p;
  ImageHeader h;
  std::memcpy(&h, d, sizeof h);
  const SwapRecord swap = read_swap_record(d);
  const uint8_t* ident = d + kIdentityOffset;
  const bool checksum_ok = header_sizes_sane(h) && header_checksum(h, ident) == h.checksum;
  if (all_zero(reinterpret_cast<const uint8_t*>(h.magic), sizeof h.magic)) {
    // Only mark_incoming() stores an incoming state: a swap-in's target before its format completed.
    if (swap.state == kSwapIncoming)
      p.kind = ImageProbe::unfinished_format;
    else if (blank_header_area(d, swap))
      p.kind = ImageProbe::blank;
    else if (h.format_version == kFormatVersion && checksum_ok)
      p.kind = ImageProbe::unfinished_format;
    else
      return p;
    p.swap = swap;
    return p;
  }
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.format_version != kFormatVersion || !checksum_ok) return p;
  p.kind = ImageProbe::image;
  p.swap = swap;
  p.identity.assign(reinterpret_cast<const char*>(ident), h.identity_length);
  p.ram_size = h.ram_size;
  p.ram_offset = h.ram_offset;
  return p;
}

std::string describe_swap_record(const SwapRecord& r) {
  switch (r.state) {
    case kSwapInUse: return "the image is in use";
    case kSwapOutgoing:
      return fmt::format("a swap-out of this VM to swap file {:016x} was interrupted ({}); the image is intact but "
                         "is not resumed while a swap file may hold the VM: run the same `nvhv swap-out` again to "
                         "finish it",
                         r.peer_id, format_time(r.changed_at_ns));
    case kSwapReleased:
      return fmt::format("the VM was swapped out to swap file {:016x} at {} and this image no longer holds it: "
                         "bring it back with `nvhv run <guest.json> --swap-in <swap file>`",
                         r.peer_id, format_time(r.changed_at_ns));
    case kSwapIncoming:
      return fmt::format("a swap-in from swap file {:016x} into this image was interrupted ({}): run the same "
                         "`nvhv run --swap-in` again to finish it",
                         r.peer_id, format_time(r.changed_at_ns));
    default:
      return fmt::format("its swap record holds an unknown state {} (corrupt, or written by a newer nvhv)", r.state);
  }
}

}  // namespace nvhv::persistence
