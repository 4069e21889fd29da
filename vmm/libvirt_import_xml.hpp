#pragma once
// A strict reader over libvirt domain XML (pugixml underneath) for `nvhv import-libvirt`.
//
// Every element is read through an XmlElement that is told which attributes and child elements
// its caller understands; the first one in document order that it does not understand is an
// ConfigError naming its XPath-like location, so nothing in the XML is ever dropped unnoticed.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

#include "vmm/base/error.hpp"

namespace nvhv::libvirt {

// Why an element (by name) cannot be imported; used when an element meets one it does not know.
using Reasons = std::map<std::string, std::string, std::less<>>;

class XmlElement {
 public:
  XmlElement(pugi::xml_node node, std::string path) : node_(node), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  std::string name() const { return node_.name(); }
  [[noreturn]] void fail(const std::string& what) const;
  [[noreturn]] void fail_attribute(std::string_view attribute, const std::string& what) const;
  std::string attribute_path(std::string_view attribute) const;

  // Element checks throw for the first attribute (then child element, then non-blank text) in
  // document order that is not listed; `reasons` explains children known to be unsupported.
  // An element with known children and no text of its own:
  void expect(std::initializer_list<std::string_view> attributes, std::initializer_list<std::string_view> children,
              const Reasons& reasons = {}) const;
  // The same for an element whose children the caller walks itself (calling fail_unsupported
  // on those it does not know):
  void expect_container(std::initializer_list<std::string_view> attributes) const;
  // An element with no children and no text:
  void expect_empty(std::initializer_list<std::string_view> attributes = {}) const;
  // Only the attributes, for an element that holds text (read with text()):
  void expect_attributes(std::initializer_list<std::string_view> attributes) const;
  // This element is not supported: the reason `reasons` gives for its name, or a generic one.
  [[noreturn]] void fail_unsupported(const Reasons& reasons) const;

  std::optional<std::string> attribute(std::string_view name) const;
  std::string required_attribute(std::string_view name) const;
  // An attribute that, when present, must hold one of `allowed`; `why` says why others fail.
  std::optional<std::string> attribute_in(std::string_view name, std::initializer_list<std::string_view> allowed,
                                          const std::string& why) const;

  // Child elements in document order, with their locations.
  std::vector<XmlElement> children() const;
  std::vector<XmlElement> children(std::string_view name) const;
  // The one child of this name: a second one is an error.
  std::optional<XmlElement> child(std::string_view name) const;
  XmlElement required_child(std::string_view name) const;

  // The element's text with surrounding blanks removed; child elements are not allowed.
  std::string text() const;
  std::string required_text() const;
  // A scaled integer in bytes: the text (or `attribute_name`'s value) with the `unit` attribute
  // (libvirt's units, case-insensitive: b/bytes, k/KiB, KB, M/MiB, MB, ... up to E/EiB, EB)
  // defaulting to `default_unit`.
  uint64_t size_bytes(std::string_view default_unit) const;
  // A decimal number with no sign, no blanks inside and no overflow.
  uint64_t number(std::string_view text, const std::string& where, uint64_t max) const;

 private:
  void expect_no_text() const;

  pugi::xml_node node_;
  std::string path_;
};

// libvirt's unit suffixes: bytes per unit, or nullopt when the suffix is not one of them.
std::optional<uint64_t> unit_scale(std::string_view unit);

// Parses `xml`; malformed XML is a ConfigError with the line and column of the fault.
class XmlDocument {
 public:
  explicit XmlDocument(std::string_view xml);
  XmlElement root() const;

 private:
  pugi::xml_document doc_;
};

}  // namespace nvhv::libvirt
