#include "persistence/codec.hpp"

#include <algorithm>
#include <limits>

#include <fmt/core.h>

namespace nvhv::persistence {

void Encoder::make_room(size_t n) {
  if (!vec_) {
    if (n > cap_ - pos_)
      throw EncodeError(fmt::format("encoded state does not fit its {}-byte buffer ({} bytes used, {} more needed)",
                                    cap_, pos_, n));
    return;
  }
  // Keep the vector's size equal to what was written so callers can use it at any time.
  if (n > vec_->capacity() - pos_) vec_->reserve(std::max({pos_ + n, 2 * vec_->capacity(), size_t{256}}));
  vec_->resize(pos_ + n);
  buf_ = vec_->data();
  cap_ = vec_->size();
}

uint32_t Encoder::checked_length(size_t n) {
  if (n > std::numeric_limits<uint32_t>::max())
    throw EncodeError(fmt::format("a record of {} bytes exceeds the 4 GiB record limit", n));
  return static_cast<uint32_t>(n);
}

void Encoder::blob(std::span<const uint8_t> b) {
  u32(checked_length(b.size()));
  put(b.data(), b.size());
}

void Encoder::str(std::string_view s) {
  u32(checked_length(s.size()));
  put(s.data(), s.size());
}

size_t Encoder::begin_record(uint16_t tag, uint16_t version) {
  const size_t mark = pos_;
  header(tag, version, 0);
  return mark;
}

void Encoder::end_record(size_t mark) {
  const uint32_t length = checked_length(pos_ - mark - kRecordHeaderSize);
  std::memcpy(buf_ + mark + 4, &length, sizeof length);
}

bool Decoder::boolean(std::string_view field) {
  const uint8_t v = u8(field);
  if (v > 1) fail(field, fmt::format("is {}, expected 0 or 1", v));
  return v == 1;
}

void Decoder::bytes(void* out, size_t n, std::string_view field) {
  need(n, field);
  if (n) std::memcpy(out, data_.data() + pos_, n);
  pos_ += n;
}

std::span<const uint8_t> Decoder::blob(std::string_view field) {
  const uint32_t n = u32(field);
  need(n, field);
  auto view = data_.subspan(pos_, n);
  pos_ += n;
  return view;
}

std::string Decoder::str(std::string_view field) {
  auto b = blob(field);
  return std::string(b.begin(), b.end());
}

void Decoder::expect_end() const {
  if (!at_end()) throw DecodeError(fmt::format("{}: {} unexpected trailing bytes", where_, remaining()));
}

void Decoder::fail(std::string_view field, std::string_view problem) const {
  throw DecodeError(fmt::format("{}: {} {}", where_, field, problem));
}

void Decoder::truncated(size_t n, std::string_view field) const {
  throw DecodeError(fmt::format("{}: {} is truncated: needs {} bytes at offset {}, {} left", where_, field, n, pos_,
                                remaining()));
}

RecordReader::RecordReader(Decoder& container) : where_(container.where()) {
  while (!container.at_end()) {
    const uint16_t tag = container.u16("record header");
    const uint16_t version = container.u16("record header");
    const uint32_t length = container.u32("record header");
    if (length > container.remaining())
      container.fail(fmt::format("record (tag {})", tag),
                     fmt::format("is truncated: length {} but only {} bytes left", length, container.remaining()));
    records_.push_back({tag, version, container.data_.subspan(container.pos_, length)});
    container.pos_ += length;
  }
}

std::string RecordReader::path(std::string_view name) const { return fmt::format("{}/{}", where_, name); }

const RecordReader::Record* RecordReader::find(uint16_t tag, std::string_view name, uint16_t max_version) const {
  const Record* found = nullptr;
  for (const Record& r : records_) {
    if (r.tag != tag) continue;
    if (found) throw DecodeError(fmt::format("{}: duplicate record", path(name)));
    found = &r;
  }
  if (found && (found->version == 0 || found->version > max_version))
    throw DecodeError(fmt::format("{}: unknown record version {} (this nvhv reads versions 1..{})", path(name),
                                  found->version, max_version));
  return found;
}

bool RecordReader::has(uint16_t tag) const {
  return std::any_of(records_.begin(), records_.end(), [tag](const Record& r) { return r.tag == tag; });
}

Decoder RecordReader::one(uint16_t tag, std::string_view name, uint16_t max_version, uint16_t* version) const {
  const Record* r = find(tag, name, max_version);
  if (!r) throw DecodeError(fmt::format("{}: missing record", path(name)));
  if (version) *version = r->version;
  return Decoder(r->body, path(name));
}

std::vector<Decoder> RecordReader::all(uint16_t tag, std::string_view name, uint16_t max_version) const {
  std::vector<Decoder> out;
  for (const Record& r : records_) {
    if (r.tag != tag) continue;
    const std::string item = fmt::format("{}[{}]", name, out.size());
    if (r.version == 0 || r.version > max_version)
      throw DecodeError(fmt::format("{}: unknown record version {} (this nvhv reads versions 1..{})", path(item),
                                    r.version, max_version));
    out.emplace_back(r.body, path(item));
  }
  return out;
}

const RecordReader::Record& RecordReader::find_raw(uint16_t tag, std::string_view name, size_t size) const {
  const Record* r = find(tag, name, 1);
  if (!r) throw DecodeError(fmt::format("{}: missing record", path(name)));
  if (r->body.size() != size)
    throw DecodeError(fmt::format("{}: wrong length {}, expected {} (sizeof the KVM struct; saved with another ABI?)",
                                  path(name), r->body.size(), size));
  return *r;
}

void RecordReader::raw_bytes(uint16_t tag, std::string_view name, std::vector<uint8_t>& out) const {
  const Record* r = find(tag, name, 1);
  if (!r) throw DecodeError(fmt::format("{}: missing record", path(name)));
  out.assign(r->body.begin(), r->body.end());
}

}  // namespace nvhv::persistence
