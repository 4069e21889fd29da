#include "vmm/swap_commands.hpp"

#include <unistd.h>

#include <chrono>

#include <fmt/core.h>

#include "persistence/swap_image.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv {
namespace {

using persistence::SwapProgress;

// Progress on stderr: an updating line on a terminal, a log line a second otherwise.
persistence::SwapProgressFn stderr_progress() {
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [tty, last](const SwapProgress& p) {
    const double pct = p.total_bytes ? 100.0 * double(p.done_bytes) / double(p.total_bytes) : 100.0;
    const double mbs = p.seconds > 0 ? double(p.done_bytes) / 1e6 / p.seconds : 0;
    const std::string text = fmt::format("{}: {:5.1f}% ({} of {} MiB, {:.0f} MB/s)", p.phase, pct, p.done_bytes >> 20,
                                         p.total_bytes >> 20, mbs);
    if (tty) {
      const std::string line = fmt::format("\rnvhv: {}{}", text, p.done_bytes == p.total_bytes ? "\n" : "");
      [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - *last >= std::chrono::seconds(1) || p.done_bytes == p.total_bytes) {
      *last = now;
      log::info("{}", text);
    }
  };
}

persistence::SwapTuning tuning(const SwapCommandOptions& o) {
  persistence::SwapTuning t;
  t.level = o.level;
  t.threads = o.threads;
  if (o.show_progress) t.progress = stderr_progress();
  return t;
}

}  // namespace

int swap_out_offline(const GuestConfig& config, const std::filesystem::path& to, const SwapCommandOptions& options) {
  if (!config.memory.backing) {
    log::error("{}: memory.backing is not set: the VM has no persistent image to swap out", config.name);
    return 2;
  }
  const std::string path = config.memory.backing->string();
  try {
    const auto geo = persistence::ImageGeometry::for_vm(config.memory_bytes(), config.vcpus);
    std::optional<persistence::Backing> backing;
    try {
      backing = persistence::Backing::open(path, persistence::Image::required_size(geo), false);
    } catch (const std::exception& e) {
      // A swapped-out regular file is too small to open as a backing: say what it is instead.
      if (auto id = persistence::finished_swap_out(path, to)) {
        log::info("{} was already swapped out to {} (swap file {:016x})", path, to.string(), *id);
        return 0;
      }
      if (auto notice = persistence::swap_state_notice(path)) {
        log::error("cannot swap out {}", *notice);
        return 1;
      }
      if (std::string(e.what()).find("in use by another process") != std::string::npos) {
        log::error("cannot swap out {}: the VM is running (an nvhv process holds its image lock); stop it with a "
                   "power-fail checkpoint first",
                   path);
        return 1;
      }
      throw;
    }
    persistence::Image image = persistence::Image::open(*backing, config.identity(), config.memory_bytes(),
                                                        config.vcpus, persistence::Image::Options{false, true});
    persistence::SwapOutOptions o;
    o.tuning = tuning(options);
    o.force = options.force;
    o.previous = options.previous;
    const auto r = persistence::swap_out_image(image, to, o);
    if (r.already_done) {
      log::info("{}", r.released);
      return 0;
    }
    log::info("swapped out {} to {} (swap file {:016x}{}{}): {}", path, to.string(), r.swap_id,
              r.incremental ? ", incremental" : "", r.resumed_interrupted ? ", finishing an interrupted swap-out" : "",
              r.released);
    log::info("swap-out figures: {}", r.figures.summary());
    return 0;
  } catch (const ConfigError& e) {
    log::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    log::error("swap-out of {} failed: {}", path, e.what());
    return 1;
  }
}

int swap_in(const GuestConfig& config, const std::filesystem::path& from, const SwapCommandOptions& options) {
  if (!config.memory.backing) {
    log::error("{}: memory.backing is not set: --swap-in needs it as the image to restore into", config.name);
    return 2;
  }
  const std::string target = config.memory.backing->string();
  try {
    persistence::SwapInOptions o;
    o.tuning = tuning(options);
    o.force = options.force;
    const auto r = persistence::swap_in_image(from, target, config.identity(), config.memory_bytes(), config.vcpus, o);
    if (r.already_done) {
      log::info("{} was already swapped in to {} (swap file {:016x}): nothing to restore", from.string(), target, r.swap_id);
      return 0;
    }
    log::info("swapped in {} (swap file {:016x}) to {}: checkpoint gen={} committed", from.string(), r.swap_id, target,
              r.generation);
    log::info("swap-in figures: {}", r.restore.summary());
    return 0;
  } catch (const ConfigError& e) {
    log::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    log::error("swap-in of {} to {} failed: {}", from.string(), target, e.what());
    return 1;
  }
}

std::optional<std::string> swap_run_notice(const GuestConfig& config) {
  if (!config.memory.backing) return std::nullopt;
  return persistence::swap_state_notice(*config.memory.backing);
}

}  // namespace nvhv
