#include "persistence/identity.hpp"

#include <xxhash.h>

#include <fmt/core.h>

namespace nvhv::persistence {
namespace {

using nlohmann::json;

constexpr size_t kMaxReported = 16;

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

void diff(const json& image, const json& config, const std::string& path, std::vector<std::string>& out) {
  if (image == config || out.size() >= kMaxReported) return;
  const std::string where = path.empty() ? "identity" : path;
  if (image.is_object() && config.is_object()) {
    for (const auto& [key, value] : image.items()) {
      if (config.contains(key))
        diff(value, config.at(key), join(path, key), out);
      else
        out.push_back(fmt::format("{}: image has {}, config has none", join(path, key), value.dump()));
    }
    for (const auto& [key, value] : config.items())
      if (!image.contains(key))
        out.push_back(fmt::format("{}: image has none, config has {}", join(path, key), value.dump()));
  } else if (image.is_array() && config.is_array()) {
    if (image.size() != config.size())
      out.push_back(fmt::format("{}: image has {} entries, config has {}", where, image.size(), config.size()));
    for (size_t i = 0; i < std::min(image.size(), config.size()); ++i)
      diff(image[i], config[i], fmt::format("{}[{}]", path, i), out);
  } else {
    out.push_back(fmt::format("{}: image has {}, config has {}", where, image.dump(), config.dump()));
  }
}

}  // namespace

std::string canonical_identity(const nlohmann::json& identity) {
  // nlohmann::json keeps object keys in a std::map, so dump() is already key-sorted.
  return identity.dump();
}

uint64_t identity_hash(std::string_view canonical) { return XXH3_64bits(canonical.data(), canonical.size()); }

std::vector<std::string> identity_differences(const nlohmann::json& image, const nlohmann::json& config) {
  std::vector<std::string> out;
  diff(image, config, "", out);
  return out;
}

}  // namespace nvhv::persistence
