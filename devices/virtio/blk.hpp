#pragma once
// virtio-blk (spec 5.2) on a raw image file: one request queue, IN/OUT/FLUSH/GET_ID; anything
// else completes with UNSUPP. Requests run synchronously with pread/pwrite on the thread that
// notified the queue (see virtio_pci.hpp); FLUSH is fdatasync.
//
// Features offered: SEG_MAX (without it Linux sends one data segment per request), FLUSH
// (the guest then issues cache flushes for its journal), and RO when opened read-only.
#include <cstdint>
#include <string>

#include "devices/virtio/device.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::virtio {

struct BlkOptions {
  std::string path;
  bool readonly = false;
  std::string serial;  // GET_ID answer (at most 20 bytes used); empty: the device id
  uint16_t queue_size = 256;
};

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint64_t kBlkFSegMax = 1ull << 2;
inline constexpr uint64_t kBlkFRo = 1ull << 5;
inline constexpr uint64_t kBlkFFlush = 1ull << 9;
inline constexpr uint32_t kBlkTIn = 0, kBlkTOut = 1, kBlkTFlush = 4, kBlkTGetId = 8;
inline constexpr uint8_t kBlkSOk = 0, kBlkSIoErr = 1, kBlkSUnsupp = 2;
inline constexpr uint32_t kBlkIdBytes = 20;

class VirtioBlk : public Device {
 public:
  // Opens the image (read-only when options.readonly); throws SystemError naming the path.
  VirtioBlk(std::string id, BlkOptions options);

  uint64_t capacity_sectors() const { return capacity_; }
  // Makes completed writes durable (fdatasync). The checkpoint path calls it before commit:
  // a resumed guest believes every completed write reached the disk, flushed or not.
  void sync();

  uint32_t device_type() const override;
  uint32_t pci_class() const override { return 0x018000; }  // mass storage, other
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {options_.queue_size}; }
  uint32_t config_size() const override { return kConfigSize; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override;
  void process(uint32_t index, Queue& queue) override;

  // Version 1: capacity and read-only flag, checked against the image on restore (a disk
  // that changed size under a suspended guest is refused).
  uint32_t snapshot_version() const override { return 1; }
  void save(persistence::Encoder& out) const override;
  void restore(persistence::Decoder& in, uint32_t version) override;

 private:
  static constexpr uint32_t kConfigSize = 0x40;  // struct virtio_blk_config through max_write_zeroes_seg
  uint8_t execute(const Chain& chain);
  uint8_t transfer(const Chain& chain, bool write, uint64_t sector);

  BlkOptions options_;
  UniqueFd fd_;
  uint64_t capacity_ = 0;  // in 512-byte sectors
  Chain chain_;
  std::vector<iovec> iov_;
  unsigned io_errors_logged_ = 0;
};

}  // namespace nvhv::virtio
