// Feeds arbitrary bytes to `nvhv import-libvirt` as domain XML: the importer must either refuse
// them with a ConfigError naming where, or produce a guest.json that nvhv's own config parser
// accepts; never crash, hang or read out of bounds.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "vmm/base/error.hpp"
#include "vmm/config.hpp"
#include "vmm/libvirt_import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  nlohmann::ordered_json guest;
  try {
    guest = nvhv::import_libvirt_domain(xml, "/fuzz");
  } catch (const nvhv::ConfigError& e) {
    // A refusal names a location or the XML fault. (The importer's own bugs are logic_errors,
    // which escape and fail the fuzzer, as does parse_config rejecting what it accepted.)
    if (e.what()[0] != '/' && std::strncmp(e.what(), "not ", 4) != 0) abort();
    return 0;
  }
  nvhv::parse_config(nlohmann::json::parse(guest.dump()), "/fuzz", 254);  // throws (and so fails the fuzzer) if it does not accept
  return 0;
}
