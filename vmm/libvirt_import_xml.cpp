#include "vmm/libvirt_import_xml.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>

namespace nvhv::libvirt {
namespace {

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool listed(std::initializer_list<std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool is_text(const pugi::xml_node& n) { return n.type() == pugi::node_pcdata || n.type() == pugi::node_cdata; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// "line L, column C" (1-based; the column counts bytes) of a byte offset into `text`.
std::string position(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  std::string_view before = text.substr(0, offset);
  size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  size_t line_start = before.rfind('\n');
  size_t column = offset - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
  return fmt::format("line {}, column {}", line, column);
}

// The offset of the first byte that does not belong to well-formed UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    if (b(i + 1) < lo || b(i + 1) > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (b(i + k) < 0x80 || b(i + k) > 0xBF) return i;
    i += len;
  }
  return std::string_view::npos;
}

// The offset of the first character reference (&#N; or &#xN;) to a character XML 1.0 does not
// allow, or npos. pugixml would decode &#0; into a NUL that silently cuts the text short.
size_t bad_character_reference_at(std::string_view s) {
  for (size_t at = s.find("&#"); at != std::string_view::npos; at = s.find("&#", at + 2)) {
    size_t i = at + 2;
    const bool hex = i < s.size() && s[i] == 'x';
    if (hex) ++i;
    uint64_t value = 0;
    size_t digits = 0;
    for (; i < s.size() && s[i] != ';' && digits < 16; ++i, ++digits) {
      int d = std::isdigit(static_cast<unsigned char>(s[i])) ? s[i] - '0'
              : hex && std::isxdigit(static_cast<unsigned char>(s[i])) ? std::tolower(static_cast<unsigned char>(s[i])) - 'a' + 10
                                                                        : -1;
      if (d < 0) return at;
      value = value * (hex ? 16 : 10) + static_cast<uint64_t>(d);
    }
    if (i >= s.size() || s[i] != ';' || digits == 0) return at;
    const bool allowed = value == 0x9 || value == 0xA || value == 0xD || (value >= 0x20 && value <= 0xD7FF) ||
                         (value >= 0xE000 && value <= 0xFFFD) || (value >= 0x10000 && value <= 0x10FFFF);
    if (!allowed) return at;
  }
  return std::string_view::npos;
}

// Character references can spell what raw bytes may not (surrogates, say).
constexpr const char* kNotUtf8 = "a character reference makes this text invalid UTF-8";

}  // namespace

void XmlElement::fail(const std::string& what) const { throw ConfigError(path_ + ": " + what); }

std::string XmlElement::attribute_path(std::string_view attribute) const { return fmt::format("{}/@{}", path_, attribute); }

void XmlElement::fail_attribute(std::string_view attribute, const std::string& what) const {
  throw ConfigError(attribute_path(attribute) + ": " + what);
}

void XmlElement::expect(std::initializer_list<std::string_view> attributes, std::initializer_list<std::string_view> children,
                        const Reasons& reasons) const {
  expect_attributes(attributes);
  for (const XmlElement& c : this->children())
    if (!listed(children, c.name())) c.fail_unsupported(reasons);
  expect_no_text();
}

void XmlElement::expect_container(std::initializer_list<std::string_view> attributes) const {
  expect_attributes(attributes);
  expect_no_text();
}

void XmlElement::expect_empty(std::initializer_list<std::string_view> attributes) const { expect(attributes, {}); }

void XmlElement::expect_attributes(std::initializer_list<std::string_view> attributes) const {
  for (const auto& a : node_.attributes()) {
    std::string_view name = a.name();
    // Namespace declarations configure nothing (e.g. xmlns:qemu on <domain>).
    if (name == "xmlns" || name.substr(0, 6) == "xmlns:") continue;
    if (!listed(attributes, name)) fail_attribute(name, fmt::format("attribute '{}' of <{}> is not supported by nvhv", name, node_.name()));
  }
}

void XmlElement::expect_no_text() const {
  for (const auto& n : node_.children())
    if (is_text(n) && !blank(n.value())) fail(fmt::format("unexpected text \"{}\" in <{}>", trim(n.value()), node_.name()));
}

void XmlElement::fail_unsupported(const Reasons& reasons) const {
  auto why = reasons.find(node_.name());
  fail(why != reasons.end() ? why->second : fmt::format("<{}> in <{}> is not supported by nvhv", node_.name(), node_.parent().name()));
}

std::optional<std::string> XmlElement::attribute(std::string_view name) const {
  for (const auto& a : node_.attributes()) {
    if (name != a.name()) continue;
    if (invalid_utf8_at(a.value()) != std::string_view::npos) fail_attribute(name, kNotUtf8);
    return std::string(a.value());
  }
  return std::nullopt;
}

std::string XmlElement::required_attribute(std::string_view name) const {
  auto v = attribute(name);
  if (!v) fail(fmt::format("<{}> needs the attribute '{}'", node_.name(), name));
  if (v->empty()) fail_attribute(name, "must not be empty");
  return *v;
}

std::optional<std::string> XmlElement::attribute_in(std::string_view name, std::initializer_list<std::string_view> allowed,
                                                    const std::string& why) const {
  auto v = attribute(name);
  if (v && !listed(allowed, *v)) fail_attribute(name, fmt::format("'{}': {}", *v, why));
  return v;
}

std::vector<XmlElement> XmlElement::children() const {
  // Devices are lists, so their steps always carry an index; elsewhere only repeated names do.
  const bool always_index = path_ == "/domain/devices";
  std::map<std::string_view, size_t> count, seen;
  for (const auto& c : node_.children())
    if (c.type() == pugi::node_element) ++count[c.name()];
  std::vector<XmlElement> out;
  for (const auto& c : node_.children()) {
    if (c.type() != pugi::node_element) continue;
    size_t index = ++seen[c.name()];
    std::string step = c.name();
    if (always_index || count[c.name()] > 1) step += fmt::format("[{}]", index);
    out.emplace_back(c, path_ + "/" + step);
  }
  return out;
}

std::vector<XmlElement> XmlElement::children(std::string_view name) const {
  std::vector<XmlElement> out;
  for (XmlElement& c : children())
    if (c.name() == name) out.push_back(std::move(c));
  return out;
}

std::optional<XmlElement> XmlElement::child(std::string_view name) const {
  auto all = children(name);
  if (all.empty()) return std::nullopt;
  if (all.size() > 1) all[1].fail(fmt::format("<{}> may appear only once in <{}>", name, node_.name()));
  return all[0];
}

XmlElement XmlElement::required_child(std::string_view name) const {
  auto c = child(name);
  if (!c) fail(fmt::format("<{}> needs a <{}> element", node_.name(), name));
  return *c;
}

std::string XmlElement::text() const {
  std::string out;
  for (const auto& n : node_.children()) {
    if (n.type() == pugi::node_element) fail(fmt::format("<{}> holds text, not the element <{}>", node_.name(), n.name()));
    if (is_text(n)) out += n.value();
  }
  if (invalid_utf8_at(out) != std::string_view::npos) fail(kNotUtf8);
  return std::string(trim(out));
}

std::string XmlElement::required_text() const {
  std::string t = text();
  if (t.empty()) fail(fmt::format("<{}> must not be empty", node_.name()));
  return t;
}

uint64_t XmlElement::number(std::string_view text, const std::string& where, uint64_t max) const {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw ConfigError(fmt::format("{}: expected a whole number, got \"{}\"", where, text));
  uint64_t n = 0;
  for (char c : text) {
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (max - digit) / 10) throw ConfigError(fmt::format("{}: {} is larger than {}", where, text, max));
    n = n * 10 + digit;
  }
  return n;
}

uint64_t XmlElement::size_bytes(std::string_view default_unit) const {
  auto unit_attr = attribute("unit");
  std::string unit = unit_attr.value_or(std::string(default_unit));
  auto scale = unit_scale(unit);
  if (!scale) fail_attribute("unit", fmt::format("unknown unit '{}' (libvirt's units: b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, ...)", unit));
  uint64_t value = number(required_text(), path_, std::numeric_limits<uint64_t>::max());
  if (value > std::numeric_limits<uint64_t>::max() / *scale) fail(fmt::format("{} {} does not fit in 64 bits of bytes", value, unit));
  return value * *scale;
}

std::optional<uint64_t> unit_scale(std::string_view unit) {
  // libvirt's virScaleInteger: "b", "byte", "bytes", or a power letter optionally followed by
  // "iB" (1024-based) or "B" (1000-based), all case-insensitive.
  if (iequals(unit, "b") || iequals(unit, "byte") || iequals(unit, "bytes")) return 1;
  if (unit.empty() || unit.size() > 3) return std::nullopt;
  uint64_t base;
  std::string_view rest = unit.substr(1);
  if (rest.empty() || iequals(rest, "iB"))
    base = 1024;
  else if (iequals(rest, "B"))
    base = 1000;
  else
    return std::nullopt;
  static constexpr std::string_view kPowers = "kmgtpe";
  auto power = kPowers.find(static_cast<char>(std::tolower(static_cast<unsigned char>(unit[0]))));
  if (power == std::string_view::npos) return std::nullopt;
  uint64_t scale = 1;
  for (size_t i = 0; i <= power; ++i) scale *= base;
  return scale;
}

XmlDocument::XmlDocument(std::string_view xml) {
  if (size_t at = xml.find('\0'); at != std::string_view::npos) throw ConfigError(fmt::format("not XML: a NUL byte at {}", position(xml, at)));
  // libvirt writes UTF-8, and guest.json (JSON) can carry nothing else.
  if (size_t at = invalid_utf8_at(xml); at != std::string_view::npos)
    throw ConfigError(fmt::format("not XML in UTF-8: an invalid byte 0x{:02x} at {}", static_cast<unsigned char>(xml[at]), position(xml, at)));
  if (size_t at = bad_character_reference_at(xml); at != std::string_view::npos)
    throw ConfigError(fmt::format("not well-formed XML: {}: a character reference to a character XML does not allow", position(xml, at)));
  pugi::xml_parse_result r = doc_.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!r)
    throw ConfigError(fmt::format("not well-formed XML: {}: {}", position(xml, static_cast<size_t>(std::max<ptrdiff_t>(r.offset, 0))), r.description()));
  size_t elements = 0;
  for (const auto& n : doc_.children()) {
    if (n.type() == pugi::node_element) ++elements;
    if (is_text(n) && !blank(n.value())) throw ConfigError("not well-formed XML: text outside the root element");
  }
  if (elements != 1) throw ConfigError(fmt::format("not well-formed XML: expected one root element, found {}", elements));
}

XmlElement XmlDocument::root() const {
  pugi::xml_node root = doc_.document_element();
  return XmlElement(root, std::string("/") + root.name());
}

}  // namespace nvhv::libvirt
