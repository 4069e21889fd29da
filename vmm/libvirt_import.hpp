#pragma once
// `nvhv import-libvirt`: libvirt domain XML to guest.json (docs/import-libvirt.md).
//
// Everything in the XML is either mapped, accepted as harmless (a documented list), or an error
// naming the element; nothing meaningful is dropped. The result always passes parse_config.
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace nvhv {

// The alias that marks the nvdimm holding guest RAM (memory.backing); other nvdimms are pmem.
inline constexpr std::string_view kLibvirtRamAlias = "ua-nvhv-ram";

// Converts one domain document. Relative paths in it are resolved against base_dir (absolute);
// the guest.json holds absolute paths, its fields in docs/config.md's order. Throws
// ConfigError "<xpath>: <why>" for what it refuses, std::logic_error should it ever produce a
// guest.json that parse_config rejects (a bug of the importer, not of the XML).
nlohmann::ordered_json import_libvirt_domain(std::string_view xml, const std::filesystem::path& base_dir);

// Reads `file` ("-": standard input, paths relative to the working directory) and converts it;
// error messages start with the file's name.
nlohmann::ordered_json import_libvirt_file(const std::string& file);

}  // namespace nvhv
