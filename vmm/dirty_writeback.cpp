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
  for (const auto& s : slots_) {
    const size_t words = (s.size / kPage + 63) / 64;
    bitmaps_.emplace_back(words, 0);
    device_bitmaps_.emplace_back(std::make_unique<std::atomic<uint64_t>[]>(words));
  }
}

void DirtyWriteback::note_write(uint64_t guest_phys, uint64_t len) {
  if (len == 0) return;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    if (guest_phys < s.guest_phys || guest_phys - s.guest_phys >= s.size) continue;
    const uint64_t first = (guest_phys - s.guest_phys) / kPage;
    const uint64_t last = std::min(s.size - 1, guest_phys - s.guest_phys + len - 1) / kPage;
    for (uint64_t page = first; page <= last; ++page)
      device_bitmaps_[i][page / 64].fetch_or(1ull << (page % 64), std::memory_order_relaxed);
    return;
  }
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
    try {
      vm_.get_dirty_log(slots_[i].id, bitmap.data());
    } catch (...) {
      if (observer_) observer_->harvest_failed(i);
      throw;
    }
    for (size_t w = 0; w < bitmap.size(); ++w) bitmap[w] |= device_bitmaps_[i][w].exchange(0, std::memory_order_relaxed);
    if (observer_) observer_->harvested(i, bitmap.data(), bitmap.size());
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
