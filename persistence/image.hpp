#pragma once
// A VM image laid over a Backing: header (geometry + VM identity), two checkpoint slots A/B,
// then guest RAM. See docs/image-format.md for the layout and the commit protocol.
//
// Life cycle in the VMM:
//   auto geo = ImageGeometry::for_vm(ram_size, vcpus);
//   Backing b = Backing::open(path, Image::required_size(geo), true);
//   Image img = Image::open(b, identity, ram_size, vcpus);
//   resumable:     state = img.load_checkpoint(); restore it; img.mark_consumed(); run vCPUs
//   fresh / no_checkpoint: boot the guest; run vCPUs
//   on power fail: stop vCPUs; img.prepare(state); img.persist_ram(); img.commit(); exit
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "persistence/backing.hpp"
#include "persistence/image_layout.hpp"
#include "persistence/machine_state.hpp"
#include "vmm/base/error.hpp"

namespace nvhv::persistence {

struct ImageGeometry {
  uint64_t ram_size = 0;
  uint32_t vcpus = 0;
  uint64_t slot_offset[2] = {0, 0};
  uint64_t slot_size = 0;
  uint64_t ram_offset = 0;

  // Throws ConfigError for a RAM size that is zero or not page-aligned, or a bad vCPU count.
  static ImageGeometry for_vm(uint64_t ram_size, uint32_t vcpus);
  uint64_t total_size() const { return ram_offset + ram_size; }
  uint64_t slot_capacity() const { return slot_size - layout::kSlotHeaderRegion; }
};

enum class ImageStatus { fresh, resumable, no_checkpoint };
const char* to_string(ImageStatus s);

// The image cannot be used as it is (not an image, corrupt, truncated, other VM, newer format);
// nothing was written. what() is meant for the operator.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the header area of a backing holds, read without opening or changing anything; the swap
// engine uses it to decide whether a swap-in may write over a backing.
struct ImageProbe {
  enum Kind {
    blank,              // all zero
    unfinished_format,  // a format stopped before its magic: holds nothing
    image,              // a valid image header (any identity)
    foreign,            // anything else: not ours to overwrite
  } kind = foreign;
  layout::SwapRecord swap{};  // as stored (zero for blank)
  std::string identity;       // canonical identity text of an image
  uint64_t ram_size = 0;      // geometry of an image
  uint64_t ram_offset = 0;
};
ImageProbe probe_image(const uint8_t* header_area, size_t size);
// Operator-facing sentence on a swap record whose state is not "in use" (how to go on).
std::string describe_swap_record(const layout::SwapRecord& r);

class Image {
 public:
  struct Options {
    // Format a backing that holds anything but a valid image of this VM (otherwise only an
    // all-zero header area is formatted). Never discards a valid image of this VM.
    bool allow_format = false;
    // Open an image whose swap record is not "in use" (refused otherwise): for the swap engine,
    // which finishes or redoes the swap it describes.
    bool ignore_swap_state = false;
  };

  static uint64_t required_size(const ImageGeometry& g) { return g.total_size(); }

  // Reads and validates the image; formats it only as Options allows. Throws ImageError
  // (having written nothing) when the backing is refused.
  static Image open(Backing& backing, const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus,
                    Options options);
  static Image open(Backing& backing, const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus) {
    return open(backing, identity, ram_size, vcpus, Options{});
  }

  ImageStatus status() const { return status_; }
  // Operator-facing: why there is no checkpoint, which one will be resumed, or that the image
  // was just formatted.
  std::string reason() const;
  // Generation of the resumable (or last committed) checkpoint; 0 if none.
  uint64_t generation() const { return generation_; }
  // CLOCK_REALTIME when the resumable checkpoint's state was saved and when it committed
  // (0: not resumable, or the commit time was lost with the power).
  uint64_t saved_at_ns() const;
  uint64_t committed_at_ns() const;
  const ImageGeometry& geometry() const { return geo_; }
  Backing& backing() const { return *backing_; }

  uint8_t* ram() const { return backing_->data() + geo_.ram_offset; }
  uint64_t ram_size() const { return geo_.ram_size; }
  // Makes all of guest RAM durable (msync on PAGE; cache flush otherwise).
  void persist_ram() const { backing_->persist(ram(), geo_.ram_size); }

  // Decodes the resumable checkpoint. Throws DecodeError if it is malformed, ImageError if
  // there is none.
  MachineState load_checkpoint() const;

  // Commit, in two steps so guest RAM can be made durable in between:
  // prepare() encodes into the inactive slot and persists payload and slot header (no
  // allocation); commit() then durably stores the generation, which publishes it, and returns
  // it. Until commit() returns, a power loss leaves the previous state of the image in force.
  // On PAGE granularity each step is one msync.
  void prepare(const MachineState& state);
  uint64_t commit();
  uint64_t commit(const MachineState& state) {
    prepare(state);
    return commit();
  }

  // Durably marks the resumable checkpoint consumed. Call after restoring it and before any
  // vCPU runs: from then on RAM no longer matches it.
  void mark_consumed();

  // The committed checkpoint's encoded payload, checksum verified (a swap-out copies it as it is).
  std::span<const uint8_t> checkpoint_payload() const;

  // Swap transitions (docs/swap-format.md, "The image's swap record"); each durably stores the
  // record's fields and then its state.
  layout::SwapRecord swap_record() const;
  // in use -> outgoing: from here a plain open refuses the image, a swap file may hold the VM.
  void begin_swap_out(uint64_t swap_id, uint64_t swap_path_hash);
  // outgoing -> released: the swap file holds the VM, this image nothing.
  void finish_swap_out();
  // incoming -> in use, remembering the swap file as the origin (base of an incremental swap-out).
  void publish_swap_in();
  // Any state a swap-in may write over -> incoming, before the image is formatted; format()
  // keeps an incoming record so the image stays refused until publish_swap_in().
  static void mark_incoming(Backing& backing, uint64_t swap_id, uint64_t swap_path_hash);

 private:
  Image() = default;
  void format(const ImageGeometry& geo, const std::string& canonical);
  layout::SwapRecord& swap_fields() const;
  void store_swap_field(uint64_t& field, uint64_t value) const;
  void evaluate_slots();
  layout::SlotHeader& slot_header(int i) const;
  uint8_t* payload(int i) const;

  Backing* backing_ = nullptr;
  ImageGeometry geo_;
  ImageStatus status_ = ImageStatus::fresh;
  std::string reason_;
  uint64_t generation_ = 0;
  int active_ = -1;        // slot holding the checkpoint `generation_` (or -1)
  int target_ = 0;         // slot the next commit writes
  uint64_t next_generation_ = 1;
  bool prepared_ = false;
};

}  // namespace nvhv::persistence
