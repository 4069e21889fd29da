#include "vmm/api/params.hpp"

#include <fmt/core.h>

namespace nvhv::api {
namespace {

const char* type_name(const nlohmann::json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_boolean()) return "a boolean";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

}  // namespace

void Params::expect_none() const {
  if (absent() || value_.empty()) return;
  throw invalid_params("this method takes no params");
}

void Params::allow_only(std::initializer_list<std::string_view> names) const {
  if (absent()) return;
  if (!is_object()) throw invalid_params("params must be an object of named members");
  for (const auto& [key, _] : value_.items()) {
    bool known = false;
    for (auto n : names) known = known || n == key;
    if (!known) throw invalid_params(fmt::format("unknown param '{}'", key));
  }
}

const nlohmann::json* Params::find(std::string_view name) const {
  if (absent()) return nullptr;
  if (!is_object()) throw invalid_params(fmt::format("params must be an object (looking for '{}')", name));
  auto it = value_.find(name);
  return it == value_.end() ? nullptr : &*it;
}

const nlohmann::json& Params::element(std::size_t index) const {
  if (!is_array()) throw invalid_params(fmt::format("params must be an array (looking for #{})", index));
  if (index >= value_.size()) throw invalid_params(fmt::format("missing param #{}", index));
  return value_[index];
}

std::string Params::fmt_missing(std::string_view name) { return fmt::format("missing param '{}'", name); }

std::string Params::fmt_type(std::string_view name, const char* expected, const nlohmann::json& got) {
  return fmt::format("param '{}' must be {}, not {}", name, expected, type_name(got));
}

std::string Params::fmt_range_text(std::string_view name, const std::string& lo, const std::string& hi) {
  return fmt::format("param '{}' must be an integer from {} to {}", name, lo, hi);
}

}  // namespace nvhv::api
