#include "devices/virtio/virtio_pci.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "devices/pci/pci_regs.hpp"
#include "devices/virtio/virtio_spec.hpp"
#include "vmm/base/log.hpp"

namespace nvhv::virtio {
namespace {

constexpr uint16_t kSubsystemBase = 0x40;  // spec 4.1.2.1: non-transitional devices use >= 0x40
constexpr unsigned kFaultsLogged = 3;      // a hostile driver must not flood the log

// Offsets inside struct virtio_pci_cap (from the capability's start).
constexpr uint32_t kCapBar = 4;
constexpr uint32_t kCapOffset = 8;
constexpr uint32_t kCapLength = 12;
constexpr uint32_t kCapExtra = 16;  // notify_off_multiplier / pci_cfg_data

uint64_t le_value(std::span<const uint8_t> data) {
  uint64_t v = 0;
  std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 8));
  return v;
}

std::vector<uint8_t> virtio_cap(uint8_t cfg_type, uint32_t offset, uint32_t length, size_t extra) {
  std::vector<uint8_t> body(14 + extra, 0);
  body[0] = static_cast<uint8_t>(16 + extra);  // cap_len counts the id and next bytes too
  body[1] = cfg_type;
  body[2] = 0;  // BAR0
  std::memcpy(&body[6], &offset, 4);
  std::memcpy(&body[10], &length, 4);
  return body;
}

bool overlaps(uint32_t offset, size_t size, uint32_t start, uint32_t len) {
  return offset < start + len && start < offset + size;
}

pci::Identity identity(const Device& d) {
  pci::Identity id;
  id.vendor = kPciVendor;
  id.device = static_cast<uint16_t>(kPciDeviceBase + d.device_type());
  id.class_code = d.pci_class();
  id.revision = 1;  // spec 4.1.2.1: non-transitional
  id.subsystem_vendor = kPciVendor;
  id.subsystem = static_cast<uint16_t>(kSubsystemBase + d.device_type());
  id.interrupt_pin = 1;
  return id;
}

}  // namespace

VirtioPci::VirtioPci(std::shared_ptr<Device> device, GuestDma dma, pci::InterruptSink& irq)
    : device_(std::move(device)),
      dma_(std::move(dma)),
      irq_(irq),
      config_(identity(*device_)),
      msix_(static_cast<uint16_t>(device_->queue_max_sizes().size() + 1), irq) {
  for (uint16_t max : device_->queue_max_sizes()) queues_.emplace_back(max);
  if (device_->config_size() > bar::kDeviceMax) throw std::invalid_argument("virtio device configuration larger than its BAR window");
  if (queues_.size() * bar::kNotifyMultiplier > bar::kMsixTable - bar::kNotify ||
      msix_.table_bytes() > bar::kMsixPba - bar::kMsixTable || msix_.pba_bytes() > bar::kSize - bar::kMsixPba)
    throw std::invalid_argument("virtio device has too many queues for the BAR layout");
  config_.add_mem64_bar(0, bar::kSize, false);  // registers with read side effects (ISR): not prefetchable

  // MSI-X first: it is what Linux uses. Then the virtio structures in the order a driver
  // should prefer them.
  std::vector<uint8_t> msix(10, 0);
  const uint16_t control = static_cast<uint16_t>(msix_.size() - 1);
  const uint32_t table = static_cast<uint32_t>(bar::kMsixTable), pba = static_cast<uint32_t>(bar::kMsixPba);  // BIR 0
  std::memcpy(&msix[0], &control, 2);
  std::memcpy(&msix[2], &table, 4);
  std::memcpy(&msix[6], &pba, 4);
  msix_cap_ = config_.add_capability(pci::kCapIdMsix, msix);
  const uint8_t control_mask[] = {0x00, 0xc0};  // enable and function mask
  config_.set_writable(msix_cap_ + 2, control_mask);

  config_.add_capability(pci::kCapIdVendor, virtio_cap(kPciCapCommon, bar::kCommon, bar::kCommonSize, 0));
  auto notify = virtio_cap(kPciCapNotify, bar::kNotify, static_cast<uint32_t>(queues_.size() * bar::kNotifyMultiplier), 4);
  std::memcpy(&notify[14], &bar::kNotifyMultiplier, 4);
  config_.add_capability(pci::kCapIdVendor, notify);
  config_.add_capability(pci::kCapIdVendor, virtio_cap(kPciCapIsr, bar::kIsr, 1, 0));
  if (device_->config_size() > 0)
    config_.add_capability(pci::kCapIdVendor, virtio_cap(kPciCapDevice, bar::kDevice, device_->config_size(), 0));
  // The spec requires the configuration-space window onto the BAR; its bar, offset, length
  // and data fields are the driver's to write.
  pci_cfg_cap_ = config_.add_capability(pci::kCapIdVendor, virtio_cap(kPciCapPciCfg, 0, 0, 4));
  const uint8_t ones[4] = {0xff, 0xff, 0xff, 0xff};
  config_.set_writable(pci_cfg_cap_ + kCapBar, std::span(ones, 1));
  config_.set_writable(pci_cfg_cap_ + kCapOffset, ones);
  config_.set_writable(pci_cfg_cap_ + kCapLength, ones);
  config_.set_writable(pci_cfg_cap_ + kCapExtra, ones);

  for (auto& q : queues_) q.reset();
  device_->attach(this);
}

void VirtioPci::plugged(const pci::Placement& placement) {
  std::lock_guard lock(mu_);
  placement_ = placement;
  placed_bar_ = placement.bar_address[0];
  config_.set_bar_address(0, placed_bar_);
  config_.set_interrupt_line(static_cast<uint8_t>(placement.intx_gsi));
}

uint64_t VirtioPci::offered_features() const {
  return device_->features() | kFVersion1 | kFRingIndirectDesc | kFRingEventIdx;
}

uint8_t VirtioPci::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

bool VirtioPci::usable() const {
  return (status_ & kStatusDriverOk) && (status_ & kStatusFeaturesOk) && !(status_ & (kStatusNeedsReset | kStatusFailed)) &&
         !quiesced_;
}

bool VirtioPci::decoding() const {
  return placed_bar_ != 0 && (config_.command() & pci::kCommandMemory) && config_.bar_address(0) == placed_bar_;
}

Queue* VirtioPci::selected_queue() { return queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr; }

// --- configuration space ---

void VirtioPci::config_read(uint32_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (overlaps(offset, data.size(), pci_cfg_cap_ + kCapExtra, 4)) pci_cfg_access(false);
  config_.read(offset, data);
}

void VirtioPci::config_write(uint32_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  config_.write(offset, data);
  if (overlaps(offset, data.size(), msix_cap_ + 2, 2)) msix_control_changed();
  if (overlaps(offset, data.size(), pci::kCommand, 2)) update_intx();  // INTx disable
  if (overlaps(offset, data.size(), pci_cfg_cap_ + kCapExtra, 4)) pci_cfg_access(true);
}

void VirtioPci::msix_control_changed() {
  const uint16_t control = config_.u16(msix_cap_ + 2);
  msix_.set_control(control & pci::kMsixEnable, control & pci::kMsixFunctionMask);
  update_intx();
}

void VirtioPci::pci_cfg_access(bool write) {
  uint8_t* cap = config_.raw() + pci_cfg_cap_;
  const uint32_t offset = config_.u32(pci_cfg_cap_ + kCapOffset);
  const uint32_t length = config_.u32(pci_cfg_cap_ + kCapLength);
  // The driver may only name an aligned 1/2/4-byte access inside BAR0 (spec 4.1.4.9.1).
  if (cap[kCapBar] != 0 || (length != 1 && length != 2 && length != 4) || offset % length != 0 || offset > bar::kSize - length) return;
  std::span<uint8_t> window(cap + kCapExtra, length);
  if (write)
    region_write(offset, window);
  else
    region_read(offset, window);
}

// --- BAR0 ---

void VirtioPci::bar_read(uint32_t bar_index, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (bar_index != 0 || !decoding()) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  region_read(offset, data);
}

void VirtioPci::bar_write(uint32_t bar_index, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (bar_index != 0 || !decoding()) return;
  region_write(offset, data);
}

void VirtioPci::region_read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  const uint64_t n = data.size();
  if (offset < bar::kCommonSize) {
    common_read(offset, data.first(std::min(n, bar::kCommonSize - offset)));
  } else if (offset == bar::kIsr) {
    data[0] = isr_;  // reading acknowledges: clear and deassert INTx
    isr_ = 0;
    update_intx();
  } else if (offset >= bar::kDevice && offset - bar::kDevice < device_->config_size()) {
    const uint64_t off = offset - bar::kDevice;
    device_->read_config(static_cast<uint32_t>(off), data.first(std::min<uint64_t>(n, device_->config_size() - off)));
  } else if (offset >= bar::kMsixTable && offset - bar::kMsixTable < msix_.table_bytes()) {
    msix_.table_read(offset - bar::kMsixTable, data);
  } else if (offset >= bar::kMsixPba && offset - bar::kMsixPba < msix_.pba_bytes()) {
    msix_.pba_read(offset - bar::kMsixPba, data);
  }
}

void VirtioPci::region_write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset < bar::kCommonSize) {
    common_write(offset, le_value(data), data.size());
  } else if (offset >= bar::kNotify && offset - bar::kNotify < queues_.size() * bar::kNotifyMultiplier) {
    // The notify address names the queue; the value written (its index) adds nothing.
    if ((offset - bar::kNotify) % bar::kNotifyMultiplier == 0) kick(static_cast<uint32_t>((offset - bar::kNotify) / bar::kNotifyMultiplier));
  } else if (offset >= bar::kDevice && offset - bar::kDevice < device_->config_size()) {
    const uint64_t off = offset - bar::kDevice;
    device_->write_config(static_cast<uint32_t>(off), data.first(std::min<uint64_t>(data.size(), device_->config_size() - off)));
  } else if (offset >= bar::kMsixTable && offset - bar::kMsixTable < msix_.table_bytes()) {
    msix_.table_write(offset - bar::kMsixTable, data);
  }
}

// --- common configuration (struct virtio_pci_common_cfg) ---

void VirtioPci::common_read(uint64_t offset, std::span<uint8_t> data) const {
  uint8_t img[bar::kCommonSize] = {};
  auto put = [&](uint32_t at, uint64_t v, size_t size) { std::memcpy(img + at, &v, size); };
  const uint64_t offered = offered_features();
  put(0, device_feature_select_, 4);
  put(4, device_feature_select_ == 0 ? offered & 0xffffffff : device_feature_select_ == 1 ? offered >> 32 : 0, 4);
  put(8, driver_feature_select_, 4);
  put(12, driver_feature_select_ == 0 ? driver_features_ & 0xffffffff : driver_feature_select_ == 1 ? driver_features_ >> 32 : 0, 4);
  put(16, config_vector_, 2);
  put(18, queues_.size(), 2);
  put(20, status_, 1);
  put(21, config_generation_, 1);
  put(22, queue_select_, 2);
  if (queue_select_ < queues_.size()) {
    const QueueState& q = queues_[queue_select_].state();
    put(24, q.size, 2);
    put(26, q.msix_vector, 2);
    put(28, q.ready ? 1 : 0, 2);
    put(30, queue_select_, 2);  // queue_notify_off: queue i notifies at i * multiplier
    put(32, q.desc_addr, 8);
    put(40, q.driver_addr, 8);
    put(48, q.device_addr, 8);
  }
  std::memcpy(data.data(), img + offset, data.size());
}

void VirtioPci::common_write(uint64_t offset, uint64_t value, size_t size) {
  auto valid_vector = [&](uint64_t v) { return v == kNoVector || v < msix_.size() ? static_cast<uint16_t>(v) : kNoVector; };
  auto half = [&](uint64_t old, bool high) {
    return high ? (old & 0xffffffffull) | (value << 32) : (old & ~0xffffffffull) | (value & 0xffffffffull);
  };
  Queue* q = selected_queue();
  switch (offset) {
    case 0:
      if (size == 4) device_feature_select_ = static_cast<uint32_t>(value);
      break;
    case 8:
      if (size == 4) driver_feature_select_ = static_cast<uint32_t>(value);
      break;
    case 12:
      // Features are fixed once FEATURES_OK was accepted.
      if (size == 4 && !(status_ & kStatusFeaturesOk) && driver_feature_select_ < 2)
        driver_features_ = half(driver_features_, driver_feature_select_ == 1);
      break;
    case 16:
      if (size == 2) config_vector_ = valid_vector(value);  // an unmappable vector reads back NO_VECTOR
      break;
    case 20:
      if (size == 1) write_status(static_cast<uint8_t>(value));
      break;
    case 22:
      if (size == 2) queue_select_ = static_cast<uint16_t>(value);
      break;
    case 24:
      if (size == 2 && q) q->set_size(static_cast<uint16_t>(value));
      break;
    case 26:
      if (size == 2 && q) q->set_msix_vector(valid_vector(value));
      break;
    case 28:
      if (size == 2 && q && value == 1 && !q->state().ready) {
        std::string why;
        q->set_features(negotiated_);
        if (!q->enable(dma_, why)) needs_reset(fmt::format("queue {}: {}", queue_select_, why));
      }
      break;
    case 32: case 36: case 40: case 44: case 48: case 52: {
      if (!q || (size != 4 && !(size == 8 && offset % 8 == 0))) break;
      const uint64_t field = offset & ~7ull;
      const bool high = offset % 8 != 0;
      const QueueState& s = q->state();
      if (field == 32) q->set_desc_addr(size == 8 ? value : half(s.desc_addr, high));
      if (field == 40) q->set_driver_addr(size == 8 ? value : half(s.driver_addr, high));
      if (field == 48) q->set_device_addr(size == 8 ? value : half(s.device_addr, high));
      break;
    }
    default:
      break;  // read-only fields and unknown offsets
  }
}

void VirtioPci::write_status(uint8_t value) {
  if (value == 0) {
    reset_device();
    return;
  }
  const uint8_t old = status_;
  uint8_t next = static_cast<uint8_t>(value | (old & kStatusNeedsReset));  // NEEDS_RESET is the device's
  if ((next & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
    // Accept only a subset of what was offered, and only modern drivers (VERSION_1); else
    // FEATURES_OK does not stick and the driver sees it cleared (spec 3.1.1).
    if ((driver_features_ & ~offered_features()) || !(driver_features_ & kFVersion1)) {
      next = static_cast<uint8_t>(next & ~kStatusFeaturesOk);
    } else {
      negotiated_ = driver_features_;
      for (auto& q : queues_) q.set_features(negotiated_);
    }
  }
  status_ = next;
  if ((next & kStatusDriverOk) && !(old & kStatusDriverOk) && (next & kStatusFeaturesOk)) {
    device_->activate(negotiated_);
    kick_all();  // buffers made available before DRIVER_OK (e.g. console receive buffers)
  }
}

void VirtioPci::reset_device() {
  status_ = 0;
  device_feature_select_ = driver_feature_select_ = 0;
  driver_features_ = negotiated_ = 0;
  config_vector_ = kNoVector;
  queue_select_ = 0;
  for (auto& q : queues_) q.reset();
  isr_ = 0;
  update_intx();
  device_->reset();
}

// --- queues and interrupts ---

void VirtioPci::kick(uint32_t index) {
  if (!usable() || index >= queues_.size() || !queues_[index].state().ready) return;
  device_->process(index, queues_[index]);
  queue_done(index);
}

void VirtioPci::kick_all() {
  for (uint32_t i = 0; i < queues_.size(); ++i) kick(i);
}

Queue* VirtioPci::usable_queue(uint32_t index) {
  if (!usable() || index >= queues_.size()) return nullptr;
  Queue& q = queues_[index];
  return q.state().ready && !q.broken() ? &q : nullptr;
}

void VirtioPci::queue_done(uint32_t index) {
  Queue& q = queues_[index];
  if (q.broken()) {
    needs_reset(fmt::format("queue {}: {}", index, q.fault()));
    return;
  }
  if (q.should_notify()) signal_queue(index);
}

void VirtioPci::needs_reset(const std::string& why) {
  if (status_ & kStatusNeedsReset) return;
  status_ |= kStatusNeedsReset;
  if (faults_logged_ < kFaultsLogged) {
    log::warn("{}: {}; the device needs a reset", snapshot_id(), why);
    if (++faults_logged_ == kFaultsLogged) log::warn("{}: further device faults are not logged", snapshot_id());
  }
  if (status_ & kStatusDriverOk) signal_config();  // spec 2.1.2: tell the driver
}

void VirtioPci::signal_queue(uint32_t index) {
  if (msix_.enabled()) {
    const uint16_t vector = queues_[index].state().msix_vector;
    if (vector != kNoVector) msix_.notify(vector);
    return;
  }
  isr_ |= kIsrQueue;
  update_intx();
}

void VirtioPci::signal_config() {
  isr_ |= kIsrConfig;
  if (msix_.enabled()) {
    if (config_vector_ != kNoVector) msix_.notify(config_vector_);
    return;
  }
  update_intx();
}

void VirtioPci::update_intx() {
  // With MSI-X enabled the function must not use INTx (PCI 3.0, 6.8.2).
  const bool pending = isr_ != 0 && !msix_.enabled();
  config_.set_interrupt_status(pending);
  const bool level = pending && !(config_.command() & pci::kCommandIntxDisable);
  if (level == intx_level_) return;
  intx_level_ = level;
  if (placement_.set_intx) placement_.set_intx(level);
}

void VirtioPci::quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
}

void VirtioPci::resume() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  kick_all();
}

}  // namespace nvhv::virtio
