#pragma once
// The small thread pool of the swap engine: chunks are compressed, checked and decompressed on a
// few threads while the calling thread does the sequential I/O and reports progress.
#include <chrono>
#include <cstddef>
#include <functional>

namespace nvhv::persistence::swappool {

// Worker threads for `requested` (0: one per CPU, at most 8).
unsigned thread_count(unsigned requested);

// Runs work(index, worker) for every index in [0, n) on `threads` new threads, in no particular
// order, while the calling thread runs tick() every `interval` until they are done. The first
// exception stops the remaining work and is rethrown once every thread has stopped.
void parallel_for(size_t n, unsigned threads, const std::function<void(size_t, unsigned)>& work,
                  const std::function<void()>& tick, std::chrono::milliseconds interval);

// produce(index, worker, slot) runs on `threads` new threads; consume(index, slot) runs on the
// calling thread strictly in index order. At most `window` indices are in flight, each owning
// slot index % window. Exceptions as for parallel_for.
void ordered_pipeline(size_t n, unsigned threads, size_t window,
                      const std::function<void(size_t, unsigned, size_t)>& produce,
                      const std::function<void(size_t, size_t)>& consume);

}  // namespace nvhv::persistence::swappool
