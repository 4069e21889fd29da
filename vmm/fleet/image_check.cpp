#include "vmm/fleet/image_check.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include <fmt/core.h>

#include "persistence/backing.hpp"
#include "persistence/image.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::fleet {
namespace {

using persistence::ImageProbe;
namespace layout = persistence::layout;

// The header area of a regular file, zero-padded when the file is shorter.
std::optional<std::vector<uint8_t>> read_header_area(const std::string& path, std::string& error) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  std::vector<uint8_t> head(layout::kHeaderRegion, 0);
  size_t done = 0;
  while (done < head.size()) {
    ssize_t n = ::pread(fd.get(), head.data() + done, head.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return head;
}

// nvhv holds an exclusive flock on its backing while it runs (persistence::Backing::open).
bool held_by_another_process(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return false;  // released when fd closes
  return errno == EWOULDBLOCK;
}

// The verdict the header area alone gives, or nullopt when the slots must be looked at.
std::optional<ImageCheck> judge_header(const ImageProbe& p, const std::string& path) {
  switch (p.kind) {
    case ImageProbe::blank: return ImageCheck{ImageState::blank, 0, path + " is blank: the VM has never run"};
    case ImageProbe::unfinished_format:
      if (p.swap.state == layout::kSwapIncoming)
        return ImageCheck{ImageState::mid_swap, 0, path + ": " + persistence::describe_swap_record(p.swap)};
      return ImageCheck{ImageState::blank, 0, path + ": an earlier format was interrupted; a run formats it again"};
    case ImageProbe::foreign:
      return ImageCheck{ImageState::unusable, 0, path + " is not an nvhv image (a run refuses it)"};
    case ImageProbe::image: break;
  }
  if (p.swap.state == layout::kSwapReleased)
    return ImageCheck{ImageState::swapped_out, 0, path + ": " + persistence::describe_swap_record(p.swap)};
  if (p.swap.state != layout::kSwapInUse)
    return ImageCheck{ImageState::mid_swap, 0, path + ": " + persistence::describe_swap_record(p.swap)};
  return std::nullopt;
}

}  // namespace

const char* to_string(ImageState s) {
  switch (s) {
    case ImageState::not_persistent: return "not_persistent";
    case ImageState::absent: return "absent";
    case ImageState::blank: return "blank";
    case ImageState::resumable: return "resumable";
    case ImageState::no_checkpoint: return "no_checkpoint";
    case ImageState::swapped_out: return "swapped_out";
    case ImageState::mid_swap: return "mid_swap";
    case ImageState::in_use: return "in_use";
    case ImageState::unusable: return "unusable";
  }
  return "?";
}

nlohmann::json ImageCheck::to_json() const {
  return {{"state", to_string(state)}, {"generation", generation}, {"detail", detail}};
}

ImageCheck check_image(const GuestConfig& config) {
  if (!config.memory.backing)
    return {ImageState::not_persistent, 0, "no memory.backing: guest RAM does not survive the process"};
  const std::string path = config.memory.backing->string();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {ImageState::absent, 0, path + " does not exist yet: the VM has never run"};
    return {ImageState::unusable, 0, fmt::format("cannot stat {}: {}", path, std::strerror(errno))};
  }
  // A swapped-out file is cut to its header area, too short to map as a backing: regular files
  // are judged by their header first. A device-DAX node has no read(): it is mapped instead.
  if (S_ISREG(st.st_mode)) {
    std::string error;
    auto head = read_header_area(path, error);
    if (!head) return {ImageState::unusable, 0, error};
    if (auto verdict = judge_header(persistence::probe_image(head->data(), head->size()), path)) return *verdict;
  }
  if (held_by_another_process(path))
    return {ImageState::in_use, 0, path + " is locked by another process: the VM is running"};
  try {
    auto backing = persistence::Backing::open(path, 0, persistence::Backing::Options{false, false});
    if (!S_ISREG(st.st_mode))
      if (auto verdict = judge_header(persistence::probe_image(backing.data(), backing.size()), path)) return *verdict;
    auto image = persistence::Image::open(backing, config.identity(), config.memory_bytes(), config.vcpus);
    switch (image.status()) {
      case persistence::ImageStatus::resumable:
        return {ImageState::resumable, image.generation(), path + ": " + image.reason()};
      case persistence::ImageStatus::no_checkpoint:
        return {ImageState::no_checkpoint, image.generation(), path + ": " + image.reason()};
      case persistence::ImageStatus::fresh: return {ImageState::blank, 0, path + ": " + image.reason()};
    }
  } catch (const persistence::ImageError& e) {
    return {ImageState::unusable, 0, e.what()};
  } catch (const std::exception& e) {
    return {ImageState::unusable, 0, fmt::format("cannot open {}: {}", path, e.what())};
  }
  return {ImageState::unusable, 0, path + ": unknown image status"};
}

}  // namespace nvhv::fleet
