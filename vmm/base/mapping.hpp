#pragma once
// Owns an mmap'ed range; unmaps it exactly once.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace nvhv {

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& o) noexcept : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Mapping() { reset(); }

  void* get() const { return addr_; }
  uint8_t* bytes() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }
  void reset() {
    if (addr_) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }

  // Anonymous private memory; throws SystemError on failure.
  static Mapping anonymous(size_t size, int extra_flags = 0);

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace nvhv
