#include "tests/unit/virtio_test_driver.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>

namespace nvhv::test {

Guest::Guest()
    : ram(Mapping::anonymous(kRamSize)),
      memory(ram.bytes(), kRamSize),
      dma(memory, [this](uint64_t gpa, uint64_t len) { writes.emplace_back(gpa, len); }) {
  bus = pci::Bus::create(pio, mmio, sink);
}

uint32_t Guest::cfg_read(uint8_t slot, uint32_t reg, size_t size) {
  const uint32_t address = 0x80000000u | static_cast<uint32_t>(slot) << 11 | (reg & 0xfc);
  pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
  uint32_t v = 0;
  pio.read(0xcfc + (reg & 3), std::span(reinterpret_cast<uint8_t*>(&v), size));
  return v;
}

void Guest::cfg_write(uint8_t slot, uint32_t reg, size_t size, uint32_t value) {
  const uint32_t address = 0x80000000u | static_cast<uint32_t>(slot) << 11 | (reg & 0xfc);
  pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
  pio.write(0xcfc + (reg & 3), std::span(reinterpret_cast<const uint8_t*>(&value), size));
}

uint64_t Guest::mmio_read(uint64_t address, size_t size) {
  uint64_t v = 0;
  mmio.read(address, std::span(reinterpret_cast<uint8_t*>(&v), size));
  return v;
}

void Guest::mmio_write(uint64_t address, size_t size, uint64_t value) {
  mmio.write(address, std::span(reinterpret_cast<const uint8_t*>(&value), size));
}

uint64_t Guest::alloc(uint64_t size, uint64_t align) {
  const uint64_t at = (next_alloc + align - 1) & ~(align - 1);
  next_alloc = at + size;
  if (next_alloc > kRamSize) throw std::runtime_error("test guest RAM exhausted");
  std::memset(memory.checked_range(at, size), 0, size);
  return at;
}

bool Guest::dirty(uint64_t gpa, uint64_t len) const {
  // Every byte of the range must be inside some reported range.
  for (uint64_t b = gpa; b < gpa + len; ++b) {
    bool hit = false;
    for (const auto& [start, n] : writes) hit |= b >= start && b - start < n;
    if (!hit) return false;
  }
  return true;
}

Driver::Driver(Guest& guest, uint8_t slot) : g_(guest), slot_(slot) {
  bar_ = (g_.cfg_read(slot, 0x10, 4) & ~0xfull) | static_cast<uint64_t>(g_.cfg_read(slot, 0x14, 4)) << 32;
  for (uint32_t cap = g_.cfg_read(slot, 0x34, 1); cap; cap = g_.cfg_read(slot, cap + 1, 1)) {
    const uint32_t id = g_.cfg_read(slot, cap, 1);
    if (id == 0x11 && !msix_cap_) {
      msix_cap_ = cap;
      const uint32_t table = g_.cfg_read(slot, cap + 4, 4);
      msix_table_ = bar_ + (table & ~7u);
    }
    if (id != 0x09) continue;
    const uint32_t type = g_.cfg_read(slot, cap + 3, 1);
    const uint32_t offset = g_.cfg_read(slot, cap + 8, 4);
    // First capability of each type wins (spec 4.1.4.1).
    if (type == 1 && !common_off_) common_off_ = offset;
    if (type == 2 && !notify_mult_) {
      notify_off_ = offset;
      notify_mult_ = g_.cfg_read(slot, cap + 16, 4);
    }
    if (type == 3 && !isr_off_) isr_off_ = offset;
    if (type == 4 && !device_off_) device_off_ = offset;
  }
}

std::vector<uint8_t> Driver::capability_ids() const {
  std::vector<uint8_t> ids;
  for (uint32_t cap = g_.cfg_read(slot_, 0x34, 1); cap && ids.size() < 48; cap = g_.cfg_read(slot_, cap + 1, 1))
    ids.push_back(static_cast<uint8_t>(g_.cfg_read(slot_, cap, 1)));
  return ids;
}

std::optional<uint32_t> Driver::virtio_cap(uint8_t cfg_type) const {
  for (uint32_t cap = g_.cfg_read(slot_, 0x34, 1); cap; cap = g_.cfg_read(slot_, cap + 1, 1))
    if (g_.cfg_read(slot_, cap, 1) == 0x09 && g_.cfg_read(slot_, cap + 3, 1) == cfg_type) return cap;
  return std::nullopt;
}

void Driver::enable_pci() { g_.cfg_write(slot_, 0x04, 2, g_.cfg_read(slot_, 0x04, 2) | 0x6); }

uint64_t Driver::common(uint32_t offset, size_t size) { return g_.mmio_read(bar_ + common_off_ + offset, size); }

void Driver::set_common(uint32_t offset, size_t size, uint64_t value) { g_.mmio_write(bar_ + common_off_ + offset, size, value); }

uint64_t Driver::device_features() {
  set_common(0, 4, 0);
  uint64_t f = common(4, 4);
  set_common(0, 4, 1);
  return f | common(4, 4) << 32;
}

bool Driver::negotiate(uint64_t features) {
  set_status(0);
  set_status(1);      // ACKNOWLEDGE
  set_status(1 | 2);  // DRIVER
  set_common(8, 4, 0);
  set_common(12, 4, features & 0xffffffff);
  set_common(8, 4, 1);
  set_common(12, 4, features >> 32);
  set_status(1 | 2 | 8);  // FEATURES_OK
  return status() & 8;
}

Vq Driver::setup_queue(uint16_t index, uint16_t size, uint16_t msix_vector) {
  set_common(22, 2, index);
  Vq vq;
  vq.index = index;
  vq.size = size ? size : static_cast<uint16_t>(common(24, 2));
  set_common(24, 2, vq.size);
  vq.desc = g_.alloc(16ull * vq.size, 16);
  vq.avail = g_.alloc(6 + 2ull * vq.size, 2);
  vq.used = g_.alloc(6 + 8ull * vq.size, 4);
  // Linux's order: addresses as two 32-bit halves, then the vector, then enable.
  for (auto [off, v] : {std::pair{32u, vq.desc}, {40u, vq.avail}, {48u, vq.used}}) {
    set_common(off, 4, v & 0xffffffff);
    set_common(off + 4, 4, v >> 32);
  }
  set_common(26, 2, msix_vector);
  set_common(28, 2, 1);
  return vq;
}

void Driver::program_vector(uint16_t v, bool masked) {
  const uint64_t e = msix_table_ + 16ull * v;
  g_.mmio_write(e, 4, 0xfee00000);
  g_.mmio_write(e + 4, 4, 0);
  g_.mmio_write(e + 8, 4, 0x40u + v);
  g_.mmio_write(e + 12, 4, masked ? 1 : 0);
}

void Driver::enable_msix(bool function_mask) {
  const uint32_t control = g_.cfg_read(slot_, msix_cap_ + 2, 2);
  g_.cfg_write(slot_, msix_cap_ + 2, 2, (control & 0x7ff) | 0x8000 | (function_mask ? 0x4000 : 0));
}

std::vector<Vq> Driver::start(uint64_t features, size_t queues, bool msix) {
  enable_pci();
  if (!negotiate(features)) throw std::runtime_error("FEATURES_OK did not stick");
  const uint32_t vectors = (g_.cfg_read(slot_, msix_cap_ + 2, 2) & 0x7ff) + 1;
  if (msix) {
    enable_msix();
    for (uint16_t v = 0; v < vectors; ++v) program_vector(v);
    set_common(16, 2, queues);  // config changes on the last vector
  }
  std::vector<Vq> vqs;
  for (uint16_t i = 0; i < queues; ++i) vqs.push_back(setup_queue(i, 0, msix ? i : 0xffff));
  driver_ok();
  return vqs;
}

void Driver::write_desc(const Vq& vq, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  const uint64_t d = vq.desc + 16ull * i;
  g_.poke<uint64_t>(d, addr);
  g_.poke<uint32_t>(d + 8, len);
  g_.poke<uint16_t>(d + 12, flags);
  g_.poke<uint16_t>(d + 14, next);
}

void Driver::publish(Vq& vq, uint16_t head) {
  if (vq.auto_used_event) g_.poke<uint16_t>(vq.avail + 4 + 2ull * vq.size, used_idx(vq));
  g_.poke<uint16_t>(vq.avail + 4 + 2ull * (vq.avail_idx % vq.size), head);
  ++vq.avail_idx;
  g_.poke<uint16_t>(vq.avail + 2, vq.avail_idx);
}

uint16_t Driver::add_chain(Vq& vq, const std::vector<Seg>& segs, bool do_publish) {
  const uint16_t head = vq.next_desc;
  for (size_t i = 0; i < segs.size(); ++i) {
    const uint16_t d = static_cast<uint16_t>((head + i) % vq.size);
    const bool last = i + 1 == segs.size();
    write_desc(vq, d, segs[i].gpa, segs[i].len, static_cast<uint16_t>((segs[i].writable ? 2 : 0) | (last ? 0 : 1)),
               static_cast<uint16_t>((d + 1) % vq.size));
  }
  vq.next_desc = static_cast<uint16_t>((head + segs.size()) % vq.size);
  if (do_publish) publish(vq, head);
  return head;
}

uint16_t Driver::add_indirect(Vq& vq, const std::vector<Seg>& segs) {
  const uint64_t table = g_.alloc(16 * segs.size(), 16);
  for (size_t i = 0; i < segs.size(); ++i) {
    const uint64_t d = table + 16 * i;
    const bool last = i + 1 == segs.size();
    g_.poke<uint64_t>(d, segs[i].gpa);
    g_.poke<uint32_t>(d + 8, segs[i].len);
    g_.poke<uint16_t>(d + 12, static_cast<uint16_t>((segs[i].writable ? 2 : 0) | (last ? 0 : 1)));
    g_.poke<uint16_t>(d + 14, static_cast<uint16_t>(i + 1));
  }
  const uint16_t head = vq.next_desc;
  write_desc(vq, head, table, static_cast<uint32_t>(16 * segs.size()), 4, 0);
  vq.next_desc = static_cast<uint16_t>((head + 1) % vq.size);
  publish(vq, head);
  return head;
}

void Driver::notify(const Vq& vq) { g_.mmio_write(bar_ + notify_off_ + uint64_t{notify_mult_} * vq.index, 2, vq.index); }

std::optional<UsedElem> Driver::take_used(Vq& vq) {
  if (used_idx(vq) == vq.last_used) return std::nullopt;
  const uint64_t e = vq.used + 4 + 8ull * (vq.last_used % vq.size);
  ++vq.last_used;
  return UsedElem{g_.peek<uint32_t>(e), g_.peek<uint32_t>(e + 4)};
}

}  // namespace nvhv::test

#include <fcntl.h>
#include <unistd.h>

namespace nvhv::test {

TempImage::TempImage(uint64_t bytes) {
  const char* dir = std::getenv("TMPDIR");
  std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/nvhv-virtio-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw std::runtime_error("mkstemp " + tmpl);
  path = tmpl;
  std::vector<uint8_t> data(bytes);
  for (uint64_t i = 0; i < bytes; ++i) data[i] = pattern(i);
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("write " + path);
}

TempImage::~TempImage() { ::unlink(path.c_str()); }

std::vector<uint8_t> TempImage::read(uint64_t offset, uint64_t len) const {
  std::vector<uint8_t> out(len);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const ssize_t n = ::pread(fd, out.data(), len, static_cast<off_t>(offset));
  ::close(fd);
  if (n != static_cast<ssize_t>(len)) throw std::runtime_error("pread " + path);
  return out;
}

Rig::Rig(bool readonly, const std::string& image_path) {
  if (image_path.empty()) {
    own_image = std::make_unique<TempImage>(kImageBytes);
    image = own_image->path;
  } else {
    image = image_path;
  }
  blk = std::make_shared<virtio::VirtioBlk>("virtio-blk0", virtio::BlkOptions{image, readonly, "disk-serial-1", 256});
  blk_pci = std::make_shared<virtio::VirtioPci>(blk, g.dma, g.sink);
  blk_slot = g.bus->add(blk_pci);
  con = std::make_shared<virtio::VirtioConsole>("virtio-console0");
  con_pci = std::make_shared<virtio::VirtioPci>(con, g.dma, g.sink);
  con_slot = g.bus->add(con_pci);
  con->set_output([this](std::span<const uint8_t> b) { output.append(b.begin(), b.end()); });
}

}  // namespace nvhv::test
