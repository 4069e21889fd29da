#pragma once
// The one binary codec for saved state. Data is a sequence of records, each
//   u16 tag | u16 version | u32 length | body[length]
// so a reader can skip records it does not know, notice records that are missing, and refuse
// versions it cannot read. Bodies hold little-endian integers, length-prefixed strings/blobs,
// nested records, or Linux KVM ABI structs copied verbatim (their size is the record length
// and is checked against sizeof on decode, which catches an ABI change).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace nvhv::persistence {

static_assert(std::endian::native == std::endian::little, "integers are stored in host order, which must be little-endian");

inline constexpr size_t kRecordHeaderSize = 8;

// Saved state is malformed; what() names where (record path and field) and what was wrong.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The state does not fit the fixed buffer it is being encoded into.
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Encoder {
 public:
  // Appends to `out`. A cleared vector keeps its capacity, so re-encoding into the same vector
  // does not allocate once it has grown to the state's size.
  explicit Encoder(std::vector<uint8_t>& out) : vec_(&out), buf_(out.data()), cap_(out.size()), pos_(out.size()), base_(out.size()) {}
  // Writes into `fixed` (e.g. straight into a mapped checkpoint slot); never allocates and
  // throws EncodeError when the buffer is full.
  explicit Encoder(std::span<uint8_t> fixed) : buf_(fixed.data()), cap_(fixed.size()) {}
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  void u8(uint8_t v) { put(&v, sizeof v); }
  void u16(uint16_t v) { put(&v, sizeof v); }
  void u32(uint32_t v) { put(&v, sizeof v); }
  void u64(uint64_t v) { put(&v, sizeof v); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void bytes(const void* p, size_t n) { put(p, n); }
  // u32 length, then the bytes.
  void blob(std::span<const uint8_t> b);
  void str(std::string_view s);
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void pod(const T& v) {
    put(&v, sizeof v);
  }

  // Opens a record and returns a mark for end_record(), which fills in the length.
  size_t begin_record(uint16_t tag, uint16_t version);
  void end_record(size_t mark);

  // A KVM ABI struct as a whole record.
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void raw_record(uint16_t tag, const T& v) {
    header(tag, 1, sizeof(T));
    put(&v, sizeof(T));
  }
  // An array of KVM ABI structs: u32 element size, u32 count, elements.
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void raw_array_record(uint16_t tag, std::span<const T> v) {
    header(tag, 1, checked_length(8 + v.size_bytes()));
    u32(sizeof(T));
    u32(static_cast<uint32_t>(v.size()));
    put(v.data(), v.size_bytes());
  }
  // Opaque bytes as a whole record (e.g. the variable-size XSAVE area).
  void bytes_record(uint16_t tag, std::span<const uint8_t> b) {
    header(tag, 1, checked_length(b.size()));
    put(b.data(), b.size());
  }

  // Bytes written by this encoder (excluding what `out` held before).
  size_t size() const { return pos_ - base_; }
  std::span<const uint8_t> written() const { return {buf_ + base_, pos_ - base_}; }

 private:
  void put(const void* p, size_t n) {
    if (n > cap_ - pos_ || vec_) make_room(n);
    if (n) std::memcpy(buf_ + pos_, p, n);
    pos_ += n;
  }
  void make_room(size_t n);
  void header(uint16_t tag, uint16_t version, uint32_t length) {
    uint8_t h[kRecordHeaderSize];
    std::memcpy(h, &tag, 2);
    std::memcpy(h + 2, &version, 2);
    std::memcpy(h + 4, &length, 4);
    put(h, sizeof h);
  }
  static uint32_t checked_length(size_t n);

  std::vector<uint8_t>* vec_ = nullptr;
  uint8_t* buf_ = nullptr;
  size_t cap_ = 0;
  size_t pos_ = 0;
  size_t base_ = 0;
};

class Decoder {
 public:
  // `where` names what is decoded ("checkpoint", "device serial0"); nested decoders extend it.
  explicit Decoder(std::span<const uint8_t> data, std::string where = "state")
      : data_(data), where_(std::move(where)) {}

  uint8_t u8(std::string_view field) { return take<uint8_t>(field); }
  uint16_t u16(std::string_view field) { return take<uint16_t>(field); }
  uint32_t u32(std::string_view field) { return take<uint32_t>(field); }
  uint64_t u64(std::string_view field) { return take<uint64_t>(field); }
  bool boolean(std::string_view field);
  void bytes(void* out, size_t n, std::string_view field);
  // Views into the decoded buffer, valid while it is.
  std::span<const uint8_t> blob(std::string_view field);
  std::string str(std::string_view field);
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  T pod(std::string_view field) {
    return take<T>(field);
  }

  size_t remaining() const { return data_.size() - pos_; }
  size_t offset() const { return pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  const std::string& where() const { return where_; }
  // Throws unless every byte was consumed: leftovers mean writer and reader disagree.
  void expect_end() const;
  [[noreturn]] void fail(std::string_view field, std::string_view problem) const;

 private:
  friend class RecordReader;
  void need(size_t n, std::string_view field) const {
    if (n > remaining()) truncated(n, field);
  }
  [[noreturn]] void truncated(size_t n, std::string_view field) const;
  template <typename T>
  T take(std::string_view field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  std::string where_;
};

// The records of one container, read up front so they can be looked up by tag in any order.
// Unknown tags are skipped (a newer writer may add records); a known tag with a newer version
// than the reader understands is an error, as is a missing or duplicated one.
class RecordReader {
 public:
  struct Record {
    uint16_t tag;
    uint16_t version;
    std::span<const uint8_t> body;
  };

  // Consumes the rest of `container`.
  explicit RecordReader(Decoder& container);

  // The single record with `tag`, as a decoder named `name` under the container.
  Decoder one(uint16_t tag, std::string_view name, uint16_t max_version, uint16_t* version = nullptr) const;
  bool has(uint16_t tag) const;
  // Every record with `tag`, in order; names them name[0], name[1], ...
  std::vector<Decoder> all(uint16_t tag, std::string_view name, uint16_t max_version) const;

  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void raw(uint16_t tag, std::string_view name, T& out) const {
    const Record& r = find_raw(tag, name, sizeof(T));
    std::memcpy(&out, r.body.data(), sizeof(T));
  }
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void raw_array(uint16_t tag, std::string_view name, std::vector<T>& out) const {
    Decoder d = one(tag, name, 1);
    const uint32_t elem = d.u32("element size");
    if (elem != sizeof(T))
      d.fail("element size", "is " + std::to_string(elem) + ", expected " + std::to_string(sizeof(T)));
    const uint32_t count = d.u32("count");
    if (static_cast<uint64_t>(count) * sizeof(T) != d.remaining())
      d.fail("count", std::to_string(count) + " elements need " + std::to_string(uint64_t{count} * sizeof(T)) +
                          " bytes, record holds " + std::to_string(d.remaining()));
    out.resize(count);
    if (count) d.bytes(out.data(), count * sizeof(T), "elements");
  }
  void raw_bytes(uint16_t tag, std::string_view name, std::vector<uint8_t>& out) const;

 private:
  const Record* find(uint16_t tag, std::string_view name, uint16_t max_version) const;
  const Record& find_raw(uint16_t tag, std::string_view name, size_t size) const;
  std::string path(std::string_view name) const;

  std::string where_;
  std::vector<Record> records_;
};

}  // namespace nvhv::persistence
