#include "persistence/swap_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace nvhv::persistence::swappool {
namespace {

// Records the first failure and tells everyone to stop.
struct FirstError {
  std::mutex mu;
  std::exception_ptr error;
  std::atomic<bool> stop{false};
  void set(std::exception_ptr e) {
    std::lock_guard lock(mu);
    if (!error) error = std::move(e);
    stop = true;
  }
};

}  // namespace

unsigned thread_count(unsigned requested) {
  if (requested) return std::min(requested, 64u);
  return std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
}

void parallel_for(size_t n, unsigned threads, const std::function<void(size_t, unsigned)>& work,
                  const std::function<void()>& tick, std::chrono::milliseconds interval) {
  threads = static_cast<unsigned>(std::clamp<size_t>(threads, 1, std::max<size_t>(n, 1)));
  std::atomic<size_t> next{0};
  FirstError failure;
  std::mutex done_mu;
  std::condition_variable done_cv;
  unsigned running = threads;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (size_t i; !failure.stop && (i = next.fetch_add(1)) < n;) {
        try {
          work(i, w);
        } catch (...) {
          failure.set(std::current_exception());
        }
      }
      std::lock_guard lock(done_mu);
      --running;
      done_cv.notify_all();
    });
  }
  {
    std::unique_lock lock(done_mu);
    while (running > 0) {
      done_cv.wait_for(lock, interval, [&] { return running == 0; });
      if (tick && running > 0) {
        lock.unlock();
        try {
          tick();
        } catch (...) {
          failure.set(std::current_exception());
        }
        lock.lock();
      }
    }
  }
  for (auto& t : pool) t.join();
  if (failure.error) std::rethrow_exception(failure.error);
}

void ordered_pipeline(size_t n, unsigned threads, size_t window,
                      const std::function<void(size_t, unsigned, size_t)>& produce,
                      const std::function<void(size_t, size_t)>& consume) {
  window = std::max<size_t>(window, 1);
  std::mutex mu;
  std::condition_variable work_cv, ready_cv;
  size_t next = 0, consumed = 0;
  std::vector<char> ready(window, 0);
  FirstError failure;

  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned w = 0; w < std::max(threads, 1u); ++w) {
    pool.emplace_back([&, w] {
      for (;;) {
        size_t i;
        {
          std::unique_lock lock(mu);
          work_cv.wait(lock, [&] { return failure.stop || next >= n || next < consumed + window; });
          if (failure.stop || next >= n) return;
          i = next++;
        }
        try {
          produce(i, w, i % window);
        } catch (...) {
          failure.set(std::current_exception());
          std::lock_guard lock(mu);
          ready_cv.notify_all();
          work_cv.notify_all();
          return;
        }
        std::lock_guard lock(mu);
        ready[i % window] = 1;
        ready_cv.notify_all();
      }
    });
  }
  for (size_t i = 0; i < n && !failure.stop; ++i) {
    {
      std::unique_lock lock(mu);
      ready_cv.wait(lock, [&] { return failure.stop || ready[i % window]; });
      if (failure.stop) break;
    }
    try {
      consume(i, i % window);
    } catch (...) {
      failure.set(std::current_exception());
      break;
    }
    std::lock_guard lock(mu);
    ready[i % window] = 0;
    ++consumed;
    work_cv.notify_all();
  }
  {
    std::lock_guard lock(mu);
    failure.stop = true;
    work_cv.notify_all();
  }
  for (auto& t : pool) t.join();
  if (failure.error) std::rethrow_exception(failure.error);
}

}  // namespace nvhv::persistence::swappool
