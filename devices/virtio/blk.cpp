#include "devices/virtio/blk.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "devices/virtio/virtio_spec.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::virtio {
namespace {

constexpr uint32_t kHeaderSize = 16;  // le32 type, le32 reserved, le64 sector
constexpr unsigned kIoErrorsLogged = 3;

// Runs preadv/pwritev until every iovec is done; false on error or end of file.
bool full_io(bool write, int fd, std::vector<iovec>& iov, uint64_t offset) {
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t n = write ? ::pwritev(fd, iov.data() + first, count, static_cast<off_t>(offset))
                            : ::preadv(fd, iov.data() + first, count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

}  // namespace

VirtioBlk::VirtioBlk(std::string id, BlkOptions options) : Device(std::move(id)), options_(std::move(options)) {
  fd_.reset(::open(options_.path.c_str(), (options_.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd_) throw_errno("open disk image " + options_.path);
  struct stat st {};
  if (::fstat(fd_.get(), &st) < 0) throw_errno("stat disk image " + options_.path);
  // A trailing partial sector is not addressable; Linux sees whole sectors only.
  capacity_ = static_cast<uint64_t>(st.st_size) / kSectorSize;
  if (options_.serial.empty()) options_.serial = snapshot_id();
  if (options_.queue_size < 4 || (options_.queue_size & (options_.queue_size - 1)) != 0)
    throw ConfigError("virtio-blk queue size must be a power of two >= 4");
}

uint32_t VirtioBlk::device_type() const { return kIdBlock; }

uint64_t VirtioBlk::features() const { return kBlkFSegMax | kBlkFFlush | (options_.readonly ? kBlkFRo : 0); }

void VirtioBlk::sync() {
  if (::fdatasync(fd_.get()) < 0) throw_errno("fdatasync disk image " + options_.path);
}

void VirtioBlk::read_config(uint32_t offset, std::span<uint8_t> data) {
  uint8_t config[kConfigSize] = {};
  std::memcpy(config + 0, &capacity_, 8);
  // Two descriptors of every request carry the header and the status byte.
  const uint32_t seg_max = options_.queue_size - 2u;
  std::memcpy(config + 12, &seg_max, 4);
  std::memcpy(data.data(), config + offset, data.size());
}

void VirtioBlk::process(uint32_t, Queue& queue) {
  while (queue.pop(chain_) == Queue::Pop::chain) {
    if (chain_.writable_bytes() == 0) {
      queue.fail("block request without a device-writable status byte");
      return;
    }
    const uint8_t status = execute(chain_);
    // The status byte ends the writable part; len covers through it, so every byte the
    // device may have written (data and status) is reported.
    chain_.write(chain_.writable_bytes() - 1, std::span(&status, 1));
    queue.push_used(chain_, static_cast<uint32_t>(chain_.writable_bytes()));
  }
}

uint8_t VirtioBlk::execute(const Chain& chain) {
  uint8_t header[kHeaderSize];
  if (chain.read(0, header) != kHeaderSize) return kBlkSIoErr;
  uint32_t type;
  uint64_t sector;
  std::memcpy(&type, header, 4);
  std::memcpy(&sector, header + 8, 8);
  switch (type) {
    case kBlkTIn: return transfer(chain, false, sector);
    case kBlkTOut: return options_.readonly ? kBlkSIoErr : transfer(chain, true, sector);
    case kBlkTFlush:
      if (::fdatasync(fd_.get()) == 0) return kBlkSOk;
      if (io_errors_logged_++ < kIoErrorsLogged) log::warn("{}: fdatasync {}: {}", snapshot_id(), options_.path, strerror(errno));
      return kBlkSIoErr;
    case kBlkTGetId: {
      // The ID is NUL-padded to 20 bytes when shorter; a shorter buffer gets a prefix.
      uint8_t id[kBlkIdBytes] = {};
      std::memcpy(id, options_.serial.data(), std::min<size_t>(options_.serial.size(), kBlkIdBytes));
      const uint64_t room = std::min<uint64_t>(chain.writable_bytes() - 1, kBlkIdBytes);
      chain.write(0, std::span(id, room));
      return kBlkSOk;
    }
    default: return kBlkSUnsupp;
  }
}

uint8_t VirtioBlk::transfer(const Chain& chain, bool write, uint64_t sector) {
  // OUT data follows the header in the readable part; IN data precedes the status byte.
  const uint64_t len = write ? chain.readable_bytes() - kHeaderSize : chain.writable_bytes() - 1;
  if (len % kSectorSize != 0 || sector > capacity_ || len / kSectorSize > capacity_ - sector) return kBlkSIoErr;
  if (len == 0) return kBlkSOk;
  iov_.clear();
  chain.iovecs(!write, write ? kHeaderSize : 0, len, iov_);
  errno = 0;
  if (full_io(write, fd_.get(), iov_, sector * kSectorSize)) return kBlkSOk;
  if (io_errors_logged_++ < kIoErrorsLogged)
    log::warn("{}: {} of {} bytes at sector {} failed: {}", snapshot_id(), write ? "write" : "read", len, sector,
              errno ? strerror(errno) : "end of file");
  return kBlkSIoErr;
}

void VirtioBlk::save(persistence::Encoder& out) const {
  out.u64(capacity_);
  out.boolean(options_.readonly);
}

void VirtioBlk::restore(persistence::Decoder& in, uint32_t) {
  const uint64_t capacity = in.u64("disk capacity");
  const bool readonly = in.boolean("disk read-only");
  if (capacity != capacity_)
    in.fail("disk capacity", fmt::format("was {} sectors, {} now has {}: the image changed under the suspended guest", capacity,
                                         options_.path, capacity_));
  if (readonly != options_.readonly)
    in.fail("disk read-only", fmt::format("was {}, the disk is now {}", readonly ? "read-only" : "read-write",
                                          options_.readonly ? "read-only" : "read-write"));
}

}  // namespace nvhv::virtio
