#pragma once
// A VM's identity: the parts of its config that saved state depends on (vCPU count, memory
// size, devices). An image only resumes under a config with the same identity.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv::persistence {

// Compact JSON with keys sorted, so equal identities give equal bytes.
std::string canonical_identity(const nlohmann::json& identity);
uint64_t identity_hash(std::string_view canonical);
// One line per difference, e.g. "vcpus: image has 2, config has 1"; empty when equal.
std::vector<std::string> identity_differences(const nlohmann::json& image, const nlohmann::json& config);

}  // namespace nvhv::persistence
