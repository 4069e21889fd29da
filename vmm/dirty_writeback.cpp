#include "vmm/dirty_writeback.hpp"

#include <pthread.h>

#include <bit>

#include "vmm/base/log.hpp"

namespace nvhv {
namespace {
constexpr uint64_t kPage = 4096;
}

DirtyWriteback::DirtyWriteback(VmFd& vm, std::vector<Slot> slots, std::chrono::milliseconds interval)
    : vm_(vm), slots_(std::move(slots)), interval_(interval) {
  for (const auto& s : slots_) bitmaps_.emplace_back((s.size / kPage + 63) / 64, 0);
}

DirtyWriteback::~DirtyWriteback() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void DirtyWriteback::start() {
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "writeback");
    run();
  });
}

void DirtyWriteback::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (cv_.wait_for(lock, interval_, [&] { return stop_; })) break;
    lock.unlock();
    try {
      background_bytes_ += pass().bytes;
      ++passes_;
    } catch (const std::exception& e) {
      log::warn("background write-back failed: {}", e.what());
    }
    lock.lock();
  }
}

DirtyWriteback::Figures DirtyWriteback::pass() {
  std::lock_guard pass_lock(pass_mu_);
  Figures f;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& bitmap = bitmaps_[i];
    // KVM_GET_DIRTY_LOG hands over the bits and write-protects those pages again, so a page
    // the guest writes after this call shows up in the next pass.
    vm_.get_dirty_log(slots_[i].id, bitmap.data());
    const uint64_t pages = slots_[i].size / kPage;
    uint64_t run_start = 0, run_len = 0;
    auto flush_run = [&] {
      if (run_len == 0) return;
      slots_[i].backing->flush(slots_[i].host + run_start * kPage, run_len * kPage);
      f.bytes += run_len * kPage;
      ++f.ranges;
      run_len = 0;
    };
    for (uint64_t w = 0; w < bitmap.size(); ++w) {
      uint64_t bits = bitmap[w];
      if (bits == 0) {
        flush_run();
        continue;
      }
      for (uint64_t b = 0; b < 64; ++b) {
        uint64_t page = w * 64 + b;
        if (page >= pages) break;
        if (bits & (1ull << b)) {
          if (run_len == 0) run_start = page;
          ++run_len;
        } else {
          flush_run();
        }
      }
      bitmap[w] = 0;
    }
    flush_run();
  }
  for (size_t i = 0; i < slots_.size(); ++i)
    if (i == 0 || slots_[i].backing != slots_[i - 1].backing) slots_[i].backing->drain();
  return f;
}

DirtyWriteback::Figures DirtyWriteback::final_flush() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  return pass();
}

}  // namespace nvhv
