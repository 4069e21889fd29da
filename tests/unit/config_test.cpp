#include "vmm/config.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/child_process.hpp"
#include "vmm/base/error.hpp"

namespace nvhv {
namespace {

using nlohmann::json;

json minimal() { return json{{"name", "t"}, {"memory", {{"size_mib", 64}}}, {"kernel", "k.elf"}}; }

std::string error_of(const json& doc, uint32_t max_vcpus = 8) {
  try {
    parse_config(doc, "/base", max_vcpus);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, MinimalHasDefaults) {
  auto cfg = parse_config(minimal(), "/base", 8);
  EXPECT_EQ(cfg.name, "t");
  EXPECT_EQ(cfg.vcpus, 1u);
  EXPECT_EQ(cfg.memory_bytes(), 64ull << 20);
  EXPECT_FALSE(cfg.memory.backing);
  EXPECT_EQ(cfg.kernel, "/base/k.elf");
  EXPECT_TRUE(cfg.serial.to_stdout);
  EXPECT_EQ(cfg.cmdline, "");
  EXPECT_FALSE(cfg.api_socket);
}

TEST(Config, FullDocument) {
  json doc = minimal();
  doc["vcpus"] = 2;
  doc["memory"]["backing"] = "/dev/dax0.0";
  doc["initrd"] = "rd.img";
  doc["cmdline"] = "tick_ms=10";
  doc["serial"] = {{"output", "serial.log"}};
  doc["api"] = {{"socket", "/run/nvhv/t.sock"}};
  doc["schema_version"] = 1;
  auto cfg = parse_config(doc, "/base", 8);
  EXPECT_EQ(cfg.vcpus, 2u);
  EXPECT_EQ(*cfg.memory.backing, "/dev/dax0.0");
  EXPECT_EQ(*cfg.initrd, "/base/rd.img");
  EXPECT_FALSE(cfg.serial.to_stdout);
  EXPECT_EQ(cfg.serial.file, "/base/serial.log");
  EXPECT_EQ(*cfg.api_socket, "/run/nvhv/t.sock");
}

struct BadCase {
  const char* label;
  std::function<void(json&)> edit;
  const char* expected;  // the message must start with this (the JSON pointer) and contain it
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NamesTheField) {
  json doc = minimal();
  GetParam().edit(doc);
  std::string err = error_of(doc);
  ASSERT_FALSE(err.empty()) << "accepted: " << doc.dump();
  EXPECT_EQ(err.rfind(GetParam().expected, 0), 0u) << err;
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, ConfigErrors,
    ::testing::Values(
        BadCase{"root_not_object", [](json& d) { d = json::array(); }, "/: expected an object"},
        BadCase{"unknown_top", [](json& d) { d["vcpu"] = 2; }, "/vcpu: unknown field"},
        BadCase{"unknown_memory", [](json& d) { d["memory"]["size"] = 2; }, "/memory/size: unknown field"},
        BadCase{"unknown_serial", [](json& d) { d["serial"] = {{"path", "x"}}; }, "/serial/path: unknown field"},
        BadCase{"unknown_api", [](json& d) { d["api"] = {{"sock", "x"}}; }, "/api/sock: unknown field"},
        BadCase{"missing_name", [](json& d) { d.erase("name"); }, "/name: required"},
        BadCase{"empty_name", [](json& d) { d["name"] = ""; }, "/name: must not be empty"},
        BadCase{"bad_name", [](json& d) { d["name"] = "a b/c"; }, "/name: must be 1-64"},
        BadCase{"name_type", [](json& d) { d["name"] = 3; }, "/name: expected a string, got an integer"},
        BadCase{"vcpus_type", [](json& d) { d["vcpus"] = "2"; }, "/vcpus: expected an integer, got a string"},
        BadCase{"vcpus_float", [](json& d) { d["vcpus"] = 1.5; }, "/vcpus: expected an integer, got a number"},
        BadCase{"vcpus_zero", [](json& d) { d["vcpus"] = 0; }, "/vcpus: must be between 1 and 8"},
        BadCase{"vcpus_negative", [](json& d) { d["vcpus"] = -1; }, "/vcpus: must be between 1 and 8"},
        BadCase{"vcpus_too_many", [](json& d) { d["vcpus"] = 9; }, "/vcpus: must be between 1 and 8"},
        BadCase{"memory_missing", [](json& d) { d.erase("memory"); }, "/memory: required"},
        BadCase{"memory_type", [](json& d) { d["memory"] = 64; }, "/memory: expected an object"},
        BadCase{"size_missing", [](json& d) { d["memory"].erase("size_mib"); }, "/memory/size_mib: required"},
        BadCase{"size_zero", [](json& d) { d["memory"]["size_mib"] = 0; }, "/memory/size_mib: must be between"},
        BadCase{"size_huge", [](json& d) { d["memory"]["size_mib"] = 1ull << 40; }, "/memory/size_mib: must be between"},
        BadCase{"backing_type", [](json& d) { d["memory"]["backing"] = true; }, "/memory/backing: expected a string"},
        BadCase{"backing_empty", [](json& d) { d["memory"]["backing"] = ""; }, "/memory/backing: must not be empty"},
        BadCase{"kernel_missing", [](json& d) { d.erase("kernel"); }, "/kernel: required"},
        BadCase{"kernel_type", [](json& d) { d["kernel"] = json::array(); }, "/kernel: expected a string, got an array"},
        BadCase{"initrd_empty", [](json& d) { d["initrd"] = ""; }, "/initrd: must not be empty"},
        BadCase{"cmdline_type", [](json& d) { d["cmdline"] = 1; }, "/cmdline: expected a string"},
        BadCase{"cmdline_long", [](json& d) { d["cmdline"] = std::string(5000, 'x'); }, "/cmdline: longer than"},
        BadCase{"cmdline_nul", [](json& d) { d["cmdline"] = std::string("a\0b", 3); }, "/cmdline: contains a NUL"},
        BadCase{"serial_type", [](json& d) { d["serial"] = "stdout"; }, "/serial: expected an object"},
        BadCase{"serial_output_type", [](json& d) { d["serial"] = {{"output", 1}}; }, "/serial/output: expected a string"},
        BadCase{"serial_output_empty", [](json& d) { d["serial"] = {{"output", ""}}; }, "/serial/output: must be"},
        BadCase{"api_socket_long", [](json& d) { d["api"] = {{"socket", std::string(200, 's')}}; }, "/api/socket: path is longer"},
        BadCase{"schema_version", [](json& d) { d["schema_version"] = 2; }, "/schema_version: must be between 1 and 1"},
        BadCase{"disks_type", [](json& d) { d["disks"] = "a.img"; }, "/disks: expected an array"},
        BadCase{"disk_path_missing", [](json& d) { d["disks"] = json::array({json::object()}); }, "/disks/0/path: required"},
        BadCase{"disk_readonly_type", [](json& d) { d["disks"] = json::array({{{"path", "a"}, {"readonly", "yes"}}}); }, "/disks/0/readonly: expected a boolean"},
        BadCase{"disk_unknown", [](json& d) { d["disks"] = json::array({{{"path", "a"}, {"cache", "none"}}}); }, "/disks/0/cache: unknown field"},
        BadCase{"console_type", [](json& d) { d["console"] = true; }, "/console: expected an object"},
        BadCase{"console_unknown", [](json& d) { d["console"] = {{"socket", "x"}}; }, "/console/socket: unknown field"},
        BadCase{"pmem_type", [](json& d) { d["pmem"] = json::object(); }, "/pmem: expected an array"},
        BadCase{"pmem_entry_type", [](json& d) { d["pmem"] = json::array({1}); }, "/pmem/0: expected an object"},
        BadCase{"pmem_path_missing", [](json& d) { d["pmem"] = json::array({{{"size_mib", 8}}}); }, "/pmem/0/path: required"},
        BadCase{"pmem_size_missing", [](json& d) { d["pmem"] = json::array({{{"path", "p"}}}); }, "/pmem/0/size_mib: required"},
        BadCase{"pmem_size_odd", [](json& d) { d["pmem"] = json::array({{{"path", "p"}, {"size_mib", 3}}}); }, "/pmem/0/size_mib: must be a multiple of 2"},
        BadCase{"pmem_unknown", [](json& d) { d["pmem"] = json::array({{{"path", "p"}, {"size_mib", 4}, {"dax", true}}}); }, "/pmem/0/dax: unknown field"},
        BadCase{"pmem_too_many", [](json& d) { d["pmem"] = json::array(); for (int i = 0; i < 9; ++i) d["pmem"].push_back({{"path", "p"}, {"size_mib", 2}}); }, "/pmem: at most 8"}),
    [](const auto& case_info) { return std::string(case_info.param.label); });

TEST(Config, LoadReportsFileAndJsonErrors) {
  test::TempDir dir;
  EXPECT_THROW(load_config(dir.file("missing.json"), 8), ConfigError);
  {
    std::ofstream(dir.file("bad.json")) << "{\"name\": ";
  }
  try {
    load_config(dir.file("bad.json"), 8);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  {
    std::ofstream(dir.file("ok.json")) << minimal().dump();
  }
  auto cfg = load_config(dir.file("ok.json"), 8);
  EXPECT_EQ(cfg.kernel, std::filesystem::path(dir.path()) / "k.elf");  // relative to the config's directory
}

TEST(Config, DisksAndConsole) {
  json doc = minimal();
  doc["disks"] = json::array({{{"path", "root.img"}}, {{"path", "/data/ro.img"}, {"readonly", true}}});
  doc["console"] = {{"log", "console.log"}};
  auto cfg = parse_config(doc, "/base", 8);
  ASSERT_EQ(cfg.disks.size(), 2u);
  EXPECT_EQ(cfg.disks[0].path, "/base/root.img");
  EXPECT_FALSE(cfg.disks[0].readonly);
  EXPECT_TRUE(cfg.disks[1].readonly);
  ASSERT_TRUE(cfg.console && cfg.console->log);
  EXPECT_EQ(*cfg.console->log, "/base/console.log");
  EXPECT_EQ(cfg.identity()["disks"], 2);
}

TEST(Config, PmemRegions) {
  json doc = minimal();
  doc["pmem"] = json::array({{{"path", "store.img"}, {"size_mib", 64}}, {{"path", "/dev/dax0.0"}, {"size_mib", 1024}}});
  auto cfg = parse_config(doc, "/base", 8);
  ASSERT_EQ(cfg.pmem.size(), 2u);
  EXPECT_EQ(cfg.pmem[0].path, "/base/store.img");
  EXPECT_EQ(cfg.pmem[1].size_mib, 1024u);
  EXPECT_EQ(cfg.identity()["pmem_mib"], json::array({64, 1024}));
  EXPECT_FALSE(parse_config(minimal(), "/", 8).identity().contains("pmem_mib"));
}

TEST(Config, IdentityIgnoresLogsAndSockets) {
  json a = minimal(), b = minimal();
  b["serial"] = {{"output", "other.log"}};
  b["api"] = {{"socket", "/tmp/x.sock"}};
  EXPECT_EQ(parse_config(a, "/", 8).identity(), parse_config(b, "/", 8).identity());
  b["vcpus"] = 2;
  EXPECT_NE(parse_config(a, "/", 8).identity(), parse_config(b, "/", 8).identity());
}

}  // namespace
}  // namespace nvhv
