#pragma once
// Keeps guest RAM on a backing that needs explicit write-back (msync on a plain file, cache-line
// flushes on ADR pmem) close to durable while the guest runs, so the flush left for the
// power-fail path is bounded by what the guest dirtied since the last pass rather than by the
// size of RAM. KVM's dirty log says which pages the guest wrote.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "persistence/backing.hpp"
#include "vmm/kvm/kvm.hpp"

namespace nvhv {

class DirtyWriteback {
 public:
  struct Slot {
    uint32_t id;
    uint8_t* host;
    uint64_t size;
    const persistence::Backing* backing;  // what makes this slot's pages durable
    uint64_t guest_phys;
  };
  struct Figures {
    uint64_t bytes = 0;   // written back by this pass
    uint64_t ranges = 0;  // contiguous runs flushed
  };
  // Sees what every pass harvests, for whoever needs the dirty pages over a longer span than one
  // pass (the swap engine: everything written since a swap-in). Called under the pass lock.
  class Observer {
   public:
    virtual ~Observer() = default;
    // The pages of slot `slot` dirtied since the previous pass (KVM's log and device writes):
    // bit p of words[p / 64] for page p of the slot.
    virtual void harvested(size_t slot, const uint64_t* words, size_t count) = 0;
    // Reading slot `slot`'s log failed: KVM may have handed over bits that are now lost.
    virtual void harvest_failed(size_t slot) = 0;
  };

  // The slots must have been registered with KVM_MEM_LOG_DIRTY_PAGES.
  DirtyWriteback(VmFd& vm, std::vector<Slot> slots, std::chrono::milliseconds interval);
  ~DirtyWriteback();
  DirtyWriteback(const DirtyWriteback&) = delete;
  DirtyWriteback& operator=(const DirtyWriteback&) = delete;

  void start();
  // Stops the background thread, then writes back everything logged since its last pass.
  // Call with the vCPUs paused so nothing new is dirtied meanwhile.
  Figures final_flush();
  // Device models store into guest RAM behind KVM's back (virtio used rings, read buffers):
  // they report it here so those pages are written back too. Any thread.
  void note_write(uint64_t guest_phys, uint64_t len);
  // Set before start(), so that it sees every pass; the observer must outlive this object.
  void set_observer(Observer* observer) { observer_ = observer; }
  const std::vector<Slot>& slots() const { return slots_; }
  uint64_t background_bytes() const { return background_bytes_.load(); }
  uint64_t passes() const { return passes_.load(); }

 private:
  Figures pass();
  void run();

  VmFd& vm_;
  std::vector<Slot> slots_;
  std::vector<std::vector<uint64_t>> bitmaps_;
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> device_bitmaps_;
  std::chrono::milliseconds interval_;
  std::mutex pass_mu_;  // one pass at a time: the final flush waits for a running one
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::atomic<uint64_t> background_bytes_{0};
  std::atomic<uint64_t> passes_{0};
  Observer* observer_ = nullptr;
};

}  // namespace nvhv
