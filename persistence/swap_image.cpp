// The crash-safe moves of a VM between its image and a swap file (docs/swap-format.md, "Moving a
// VM"). Each step is durable before the next; the fault points sit between them.
#include "persistence/swap_image.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include <fmt/core.h>

#include "persistence/identity.hpp"
#include "persistence/swap_io.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/fault_injection.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::persistence {

const std::vector<std::string> kSwapOutFaultPoints = {
    "swap-out:after-temp-create", "swap-out:mid-data",     "swap-out:after-trailer",    "swap-out:after-fsync",
    "swap-out:after-verify",      "swap-out:after-outgoing", "swap-out:after-rename",   "swap-out:after-dir-fsync",
    "swap-out:after-released",    "swap-out:after-shrink",
};
const std::vector<std::string> kSwapInFaultPoints = {
    "swap-in:after-verify",  "swap-in:after-target-open", "swap-in:after-incoming",       "swap-in:after-format",
    "swap-in:mid-ram",       "swap-in:after-ram",         "swap-in:after-prepare",        "swap-in:after-commit",
    "swap-in:after-consume-record", "swap-in:after-consume", "swap-in:after-publish",
};

namespace {

using layout::SwapRecord;

std::string id_text(uint64_t id) { return fmt::format("{:016x}", id); }

// Releases what the image held once the swap file holds the VM.
std::string release_storage(Image& image) {
  Backing& b = image.backing();
  image.finish_swap_out();
  fault_point("swap-out:after-released");
  std::string what;
  if (b.kind() == BackingKind::file || b.kind() == BackingKind::fsdax_file) {
    // The header area stays: its identity and swap record tell a later run what happened.
    if (::ftruncate(b.fd(), static_cast<off_t>(layout::kHeaderRegion)) != 0)
      throw SystemError(errno, fmt::format("truncate {}", b.path()));
    swapio::fsync_or_throw(b.fd(), b.path());
    what = fmt::format("{} truncated to its {} KiB header", b.path(), layout::kHeaderRegion >> 10);
  } else {
    // A device keeps its size; the consumed checkpoint also keeps an older nvhv from resuming it.
    image.mark_consumed();
    what = fmt::format("{} marked free (swapped out) in its header", b.path());
  }
  fault_point("swap-out:after-shrink");
  return what;
}

// May a swap-in of swap file `id` write over a backing whose header area looks like `p`?
// Returns the reason it may not, or "" when it may.
std::string refusal(const ImageProbe& p, uint64_t id, const std::string& target) {
  const SwapRecord& r = p.swap;
  switch (p.kind) {
    case ImageProbe::blank: return "";
    case ImageProbe::unfinished_format:
      if (r.state == layout::kSwapIncoming && r.peer_id != id)
        return fmt::format("{} is the target of an interrupted swap-in of swap file {}: finish that one first",
                           target, id_text(r.peer_id));
      return "";
    case ImageProbe::foreign:
      return fmt::format("{} is neither blank nor an nvhv image: refusing to overwrite it", target);
    case ImageProbe::image: break;
  }
  switch (r.state) {
    case layout::kSwapInUse:
      return fmt::format("{} holds a VM image in use (identity {}): refusing to overwrite it", target, p.identity);
    case layout::kSwapReleased: return "";
    case layout::kSwapOutgoing:
      if (r.peer_id == id) return "";  // its own VM coming back before the swap-out released it
      return fmt::format("{} holds a VM whose swap-out to swap file {} was interrupted: finish that swap-out first",
                         target, id_text(r.peer_id));
    case layout::kSwapIncoming:
      if (r.peer_id == id) return "";  // our own interrupted swap-in: redo it
      return fmt::format("{} is the target of an interrupted swap-in of swap file {}: finish that one first", target,
                         id_text(r.peer_id));
    default: return fmt::format("{}: {}", target, describe_swap_record(r));
  }
}

struct TargetBefore {
  bool exists = false;
  uint64_t size = 0;
  std::optional<ImageProbe> probe;  // regular files only: a device-DAX node has no read()
};

TargetBefore look_at(const std::filesystem::path& target) {
  TargetBefore t;
  UniqueFd fd(::open(target.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno != ENOENT) throw SystemError(errno, fmt::format("open {}", target.string()));
    t.probe = ImageProbe{ImageProbe::blank, {}, {}, 0, 0};  // Backing::open will create it
    return t;
  }
  t.exists = true;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw SystemError(errno, fmt::format("fstat {}", target.string()));
  if (!S_ISREG(st.st_mode)) return t;
  t.size = static_cast<uint64_t>(st.st_size);
  std::vector<uint8_t> head(layout::kHeaderRegion, 0);
  const size_t n = static_cast<size_t>(std::min<uint64_t>(t.size, head.size()));
  if (n && !swapio::pread_full(fd.get(), head.data(), n, 0)) throw SwapError(fmt::format("{} shrank while read", target.string()));
  // A short file reads as zero-padded: only all-zero content then counts as blank.
  t.probe = probe_image(head.data(), head.size());
  if (n < head.size() && t.probe->kind != ImageProbe::blank) t.probe->kind = ImageProbe::foreign;
  return t;
}

std::string now_text(uint64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000u);
  tm tmv{};
  char buf[64];
  if (!::gmtime_r(&secs, &tmv) || std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tmv) == 0) return "?";
  return buf;
}

// The swap file at `to` still holds the VM this record was released to.
bool released_to(const SwapRecord& r, const std::filesystem::path& to) {
  if (r.state != layout::kSwapReleased || r.peer_path_hash != swapio::path_hash(swapio::absolute_path(to))) return false;
  try {
    SwapFile f = SwapFile::open(to, SwapFile::Mode::read);
    return f.swap_id() == r.peer_id && !f.consumed().at_ns;
  } catch (const SwapError&) {
    return false;
  }
}

}  // namespace

std::optional<uint64_t> finished_swap_out(const std::filesystem::path& image_path, const std::filesystem::path& to) {
  try {
    const TargetBefore t = look_at(image_path);
    if (t.probe && t.probe->kind == ImageProbe::image && released_to(t.probe->swap, to)) return t.probe->swap.peer_id;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

SwapOutResult swap_out_image(Image& image, const std::filesystem::path& to, const SwapOutOptions& options) {
  Backing& backing = image.backing();
  const SwapRecord rec = image.swap_record();
  if (released_to(rec, to)) {
    SwapOutResult done;
    done.swap_id = rec.peer_id;
    done.already_done = true;
    done.released = fmt::format("{} was already swapped out to {}", backing.path(), to.string());
    return done;
  }
  if (rec.state != layout::kSwapInUse && rec.state != layout::kSwapOutgoing)
    throw SwapError(fmt::format("cannot swap out {}: {}", backing.path(), describe_swap_record(rec)));
  if (image.status() != ImageStatus::resumable)
    throw SwapError(fmt::format("cannot swap out {}: it holds no committed checkpoint to swap out ({}); run the VM "
                                "and stop it with a power-fail checkpoint first",
                                backing.path(), image.reason()));
  const bool rerun = rec.state == layout::kSwapOutgoing;
  const std::string to_abs = swapio::absolute_path(to);
  const uint64_t to_hash = swapio::path_hash(to_abs);
  if (rerun && rec.peer_path_hash != to_hash && !options.force)
    throw SwapError(fmt::format("an interrupted swap-out of {} was writing swap file {} to another path: run it "
                                "again with that destination",
                                backing.path(), id_text(rec.peer_id)));

  SwapOutResult result;
  // The destination may be the only copy of some VM: only a consumed swap file is replaced.
  std::optional<SwapFile> existing;
  if (std::filesystem::exists(to)) {
    try {
      existing = SwapFile::open(to, SwapFile::Mode::update);
    } catch (const SwapBusyError&) {
      throw;
    } catch (const SwapError& e) {
      if (!options.force)
        throw SwapError(fmt::format("refusing to swap out over a file that is not a consumed swap file: {}", e.what()));
      log::warn("replacing it as forced: {}", e.what());
    }
  }
  if (rerun && existing && existing->swap_id() == rec.peer_id) {
    // The interrupted swap-out got as far as the rename: its file holds the VM (or held it and
    // has been swapped in since). Never write it again: finish releasing the image.
    if (!existing->consumed().at_ns) result.figures = existing->verify(false, options.tuning);
    result.swap_id = rec.peer_id;
    result.resumed_interrupted = true;
    result.released = release_storage(image);
    return result;
  }
  if (existing && !existing->consumed().at_ns) {
    if (!options.force)
      throw SwapError(fmt::format("refusing to replace swap file {}: it holds a VM that has not been swapped in (swap "
                                  "file {}, saved {})",
                                  to.string(), id_text(existing->swap_id()), now_text(existing->header().saved_realtime_ns)));
  }

  const ImageProbe self = probe_image(backing.data(), backing.size());
  const nlohmann::json identity = nlohmann::json::parse(self.identity);
  const std::span<const uint8_t> payload = image.checkpoint_payload();
  const MachineState state = decode_machine_state(payload, fmt::format("checkpoint of {}", backing.path()));

  // Incremental: reuse chunks of the file this image came from.
  std::optional<SwapFile> previous_holder;
  const SwapFile* base_file = nullptr;
  if (options.previous && swapio::absolute_path(*options.previous) != to_abs) {
    try {
      previous_holder = SwapFile::open(*options.previous, SwapFile::Mode::read);
      base_file = &*previous_holder;
    } catch (const SwapError& e) {
      log::warn("{}; swapping out in full", e.what());
    }
  } else if (existing && existing->consumed().at_ns) {
    base_file = &*existing;
  }
  SwapBase base;
  if (base_file) {
    const auto& h = base_file->header();
    if (h.ram_size != image.ram_size() || h.chunk_size != options.tuning.chunk_size ||
        base_file->identity() != canonical_identity(identity)) {
      log::info("swap file {} does not match this VM's RAM, chunk size or identity: swapping out in full",
                base_file->path());
      base_file = nullptr;
    } else {
      base.file = base_file;
      // A dirty map only says what changed since the swap-in from that very file; without one,
      // every chunk is compared by checksum.
      if (base_file->swap_id() == rec.origin_id) {
        base.dirty_chunks = options.dirty_chunks;
      } else {
        log::info("swap file {} is not the one {} was swapped in from: comparing every chunk by checksum",
                  base_file->path(), backing.path());
      }
      base.verify_clean = options.verify_clean_chunks || !base.dirty_chunks;
    }
  }

  SwapSource src;
  src.ram = {image.ram(), image.ram_size()};
  src.state = payload;
  src.identity = identity;
  src.vcpus = image.geometry().vcpus;
  src.saved_realtime_ns = state.saved_at_realtime_ns;
  src.generation = image.generation();
  src.holes_fd = backing.fd();  // a device or anonymous memory is read whole (swapholes::DataFinder)
  src.ram_file_offset = image.geometry().ram_offset;
  const uint64_t swap_id = rerun ? rec.peer_id : swapio::random_id();
  const auto t0 = std::chrono::steady_clock::now();
  PendingSwapFile pending = write_swap_file(to, src, swap_id, options.tuning, base_file ? &base : nullptr);
  const auto t1 = std::chrono::steady_clock::now();

  // Read back what was written before the file can become the VM's copy.
  {
    UniqueFd fd(::open(pending.temp_path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw SystemError(errno, fmt::format("reopen {}", pending.temp_path().string()));
    SwapFile written = SwapFile::from_fd(std::move(fd), pending.temp_path().string());
    if (written.swap_id() != swap_id || written.stored_bytes() != pending.figures().stored_bytes)
      throw SwapError(fmt::format("{} reads back differently from what was written", pending.temp_path().string()));
    if (options.read_back) {
      SwapTuning quiet = options.tuning;
      quiet.progress = nullptr;
      written.verify(false, quiet);
    }
  }
  const auto t2 = std::chrono::steady_clock::now();
  fault_point("swap-out:after-verify");
  image.begin_swap_out(swap_id, to_hash);
  fault_point("swap-out:after-outgoing");
  pending.publish();
  existing.reset();

  result.swap_id = swap_id;
  result.incremental = base_file != nullptr;
  result.figures = pending.figures();
  const auto t3 = std::chrono::steady_clock::now();
  result.released = release_storage(image);
  const auto t4 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  result.file_seconds = ms(t0, t3) / 1000;
  result.release_seconds = ms(t3, t4) / 1000;
  log::debug("swap-out of {}: write and fsync {:.0f} ms, read-back check {:.0f} ms, rename into place {:.0f} ms, "
             "release {:.0f} ms",
             backing.path(), ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4));
  return result;
}

SwapInResult swap_in_image(const std::filesystem::path& from, const std::filesystem::path& target,
                           const nlohmann::json& identity, uint64_t ram_size, uint32_t vcpus,
                           const SwapInOptions& options) {
  SwapFile file = SwapFile::open(from, SwapFile::Mode::update);
  file.check_matches(identity, ram_size, vcpus);
  MachineState state;
  try {
    state = decode_machine_state(file.state(), fmt::format("swap file {} (machine state)", from.string()));
  } catch (const DecodeError& e) {
    throw SwapError(e.what());
  }
  if (state.vcpus.size() != vcpus)
    throw SwapError(fmt::format("swap file {}: its machine state has {} vCPUs, the config {}", from.string(),
                                state.vcpus.size(), vcpus));
  const uint64_t id = file.swap_id();
  const std::string target_abs = swapio::absolute_path(target);
  const std::string target_name = target.string();

  // A consumed file is only ever swapped in again into the target still waiting for it (a
  // swap-in interrupted after consuming, before publishing): anywhere else the VM would run twice.
  auto check_consumed = [&](const ImageProbe& p) {
    const bool waits_for_us = p.kind != ImageProbe::blank && p.kind != ImageProbe::foreign &&
                              p.swap.state == layout::kSwapIncoming && p.swap.peer_id == id;
    if (file.consumed().at_ns && !waits_for_us && !options.force)
      throw SwapError(fmt::format("swap file {} was already swapped in, to {} at {}: the VM lives there now (a swap "
                                  "file is swapped in once; it is kept as the base of the next incremental swap-out)",
                                  from.string(), file.consumed().target.empty() ? "another backing" : file.consumed().target,
                                  now_text(file.consumed().at_ns)));
  };
  auto check_target = [&](const ImageProbe& p) {
    if (std::string why = refusal(p, id, target_name); !why.empty() && !options.force) throw SwapError(why);
    check_consumed(p);
  };
  // Rerunning a swap-in that finished just goes on to the resume (the VM lives in the target).
  auto finished = [&](const ImageProbe& p) {
    return file.consumed().at_ns && p.kind == ImageProbe::image && p.swap.state == layout::kSwapInUse &&
           p.swap.origin_id == id;
  };
  SwapInResult result;
  result.swap_id = id;
  result.already_done = true;
  // Regular files are looked at before Backing::open, which would create or grow them.
  const TargetBefore before = look_at(target);
  if (before.probe && finished(*before.probe)) return result;
  if (before.probe) check_target(*before.probe);
  result.already_done = false;

  // Every chunk is checked before anything is written; restore() checks again as it decompresses.
  // The chunk data read stays in memory for restore() when it fits: the file is then read once.
  result.verify = file.verify(false, options.tuning, /*keep_for_restore=*/true);
  fault_point("swap-in:after-verify");

  const ImageGeometry geo = ImageGeometry::for_vm(ram_size, vcpus);
  Backing backing = Backing::open(target_name, Image::required_size(geo), Backing::Options{true, true});
  fault_point("swap-in:after-target-open");
  const ImageProbe now = probe_image(backing.data(), backing.size());
  if (finished(now)) {
    result.already_done = true;
    return result;
  }
  check_target(now);
  // Blocks fallocate just added read as zero; a device or a reused file holds old data.
  const bool file_kind = backing.kind() == BackingKind::file || backing.kind() == BackingKind::fsdax_file;
  const bool known_zero = file_kind && (!before.exists || before.size <= geo.ram_offset);

  Image::mark_incoming(backing, id, swapio::path_hash(swapio::absolute_path(from)));
  fault_point("swap-in:after-incoming");
  Image image = Image::open(backing, identity, ram_size, vcpus, Image::Options{true, false});
  fault_point("swap-in:after-format");
  result.restore = file.restore(backing, image.geometry().ram_offset, known_zero, options.tuning);
  fault_point("swap-in:after-ram");
  image.prepare(state);
  fault_point("swap-in:after-prepare");
  result.generation = image.commit();
  fault_point("swap-in:after-commit");
  // Consumed before published: from here a swap-in of this file is only ever redone into this
  // target, which stays refused by a plain run until the next store publishes it.
  if (!file.consumed().at_ns) file.mark_consumed(target_abs);
  fault_point("swap-in:after-consume");
  image.publish_swap_in();
  fault_point("swap-in:after-publish");
  return result;
}

std::optional<std::string> swap_state_notice(const std::filesystem::path& path) {
  TargetBefore t;
  try {
    t = look_at(path);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!t.probe) return std::nullopt;
  const ImageProbe& p = *t.probe;
  const bool marked =
      (p.kind == ImageProbe::image || p.kind == ImageProbe::unfinished_format) && p.swap.state != layout::kSwapInUse;
  if (!marked) return std::nullopt;
  return fmt::format("{}: {}", path.string(), describe_swap_record(p.swap));
}

}  // namespace nvhv::persistence
