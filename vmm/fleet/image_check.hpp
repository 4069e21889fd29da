#pragma once
// What a stopped VM's persistent image holds, read without changing anything: whether `nvhv run`
// would resume a committed checkpoint, boot fresh, or refuse (swapped out, mid-swap, in use).
// fleet resume and `nvhv inspect` decide from it without starting the VM.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/config.hpp"

namespace nvhv::fleet {

enum class ImageState {
  not_persistent,  // no memory.backing: nothing survives the process
  absent,          // the backing does not exist yet: the VM never ran
  blank,           // never formatted (or a format was interrupted): a run boots fresh
  resumable,       // a committed, unconsumed checkpoint: a run resumes it
  no_checkpoint,   // an image without a checkpoint to resume: a run boots fresh
  swapped_out,     // the VM lives in a swap file: run --swap-in brings it back
  mid_swap,        // a swap-out or swap-in was interrupted: rerun it (the detail says which)
  in_use,          // another process holds the image's lock: the VM is running
  unusable,        // not an image of this VM, corrupt, unreadable: a run refuses it
};
const char* to_string(ImageState s);

struct ImageCheck {
  ImageState state = ImageState::unusable;
  uint64_t generation = 0;  // of the resumable checkpoint (or the last one, when known)
  std::string detail;       // one operator-facing sentence
  nlohmann::json to_json() const;
};

// Never formats, locks only briefly (to read a consistent image), never marks anything.
ImageCheck check_image(const GuestConfig& config);

}  // namespace nvhv::fleet
