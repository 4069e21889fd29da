#pragma once
// A request's "params", as handlers see them: an object, an array, or absent (the dispatcher
// has already refused anything else). The accessors throw RpcError -32602 with a message that
// names the offending parameter, so handlers need no validation code of their own.
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "vmm/api/rpc_error.hpp"

namespace nvhv::api {

class Params {
 public:
  Params() = default;  // absent
  explicit Params(nlohmann::json value) : value_(std::move(value)) {}

  bool absent() const { return value_.is_null(); }
  bool is_object() const { return value_.is_object(); }
  bool is_array() const { return value_.is_array(); }
  // The raw value: null when absent.
  const nlohmann::json& json() const { return value_; }

  // Refuses any params other than absent, {} or [] (for methods that take none).
  void expect_none() const;
  // Refuses positional params and any named member not in `names`.
  void allow_only(std::initializer_list<std::string_view> names) const;

  // Named member; -32602 when missing or of the wrong type. Absent params count as {}.
  template <typename T>
  T get(std::string_view name) const {
    const nlohmann::json* v = find(name);
    if (!v) throw invalid_params(fmt_missing(name));
    return convert<T>(*v, name);
  }
  // Named member, or `fallback` when it is missing (null counts as missing).
  template <typename T>
  T get_or(std::string_view name, T fallback) const {
    const nlohmann::json* v = find(name);
    if (!v || v->is_null()) return fallback;
    return convert<T>(*v, name);
  }
  // Positional parameter; -32602 when params are not an array, too short, or of the wrong type.
  template <typename T>
  T at(std::size_t index) const {
    const nlohmann::json& v = element(index);
    return convert<T>(v, "#" + std::to_string(index));
  }
  template <typename T>
  std::optional<T> get_optional(std::string_view name) const {
    const nlohmann::json* v = find(name);
    if (!v || v->is_null()) return std::nullopt;
    return convert<T>(*v, name);
  }

 private:
  const nlohmann::json* find(std::string_view name) const;
  const nlohmann::json& element(std::size_t index) const;
  static std::string fmt_missing(std::string_view name);
  static std::string fmt_type(std::string_view name, const char* expected, const nlohmann::json& got);

  // Strict: no silent float->int truncation, no negative->unsigned wrap-around.
  template <typename T>
  static T convert(const nlohmann::json& v, std::string_view name) {
    if constexpr (std::is_same_v<T, nlohmann::json>) {
      return v;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) throw invalid_params(fmt_type(name, "a boolean", v));
      return v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
      } else if (v.is_number_integer()) {
        auto i = v.get<std::int64_t>();
        if constexpr (std::is_signed_v<T>) {
          if (i >= std::numeric_limits<T>::min() && i <= std::numeric_limits<T>::max()) return static_cast<T>(i);
        } else {
          if (i >= 0 && static_cast<std::uint64_t>(i) <= std::numeric_limits<T>::max()) return static_cast<T>(i);
        }
      } else {
        throw invalid_params(fmt_type(name, "an integer", v));
      }
      throw invalid_params(fmt_range(name, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) throw invalid_params(fmt_type(name, "a number", v));
      return v.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) throw invalid_params(fmt_type(name, "a string", v));
      return v.get<std::string>();
    } else {
      try {
        return v.get<T>();
      } catch (const nlohmann::json::exception&) {
        throw invalid_params(fmt_type(name, "of another type", v));
      }
    }
  }
  template <typename I>
  static std::string fmt_range(std::string_view name, I lo, I hi) {
    return fmt_range_text(name, std::to_string(lo), std::to_string(hi));
  }
  static std::string fmt_range_text(std::string_view name, const std::string& lo, const std::string& hi);

  nlohmann::json value_;
};

}  // namespace nvhv::api
