// The host registry (vmm/fleet/registry.hpp): entry files, their validation, atomic replacement,
// the registry lock and how a recorded pid is judged alive.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/child_process.hpp"
#include "vmm/fleet/registry.hpp"

namespace nvhv::fleet {
namespace {

using nlohmann::json;
using test::TempDir;
namespace fs = std::filesystem;

Entry sample(const std::string& name) {
  Entry e;
  e.name = name;
  e.config = "/etc/nvhv/" + name + ".json";
  e.api_socket = "/run/nvhv/" + name + ".sock";
  e.backing = "/var/lib/nvhv/images/" + name + ".img";
  e.autostart = true;
  e.status = VmStatus::checkpointed;
  e.detail = "power-fail checkpoint gen=3 committed in 1234 us";
  e.exit_status = 0;
  e.resumed_generation = 2;
  e.last_checkpoint = json{{"generation", 3}, {"total_us", 1234}};
  return e;
}

std::string error_of(const json& doc) {
  try {
    Entry::from_json(doc, "vms/x.json");
  } catch (const RegistryError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Registry, StateDirComesFromTheFlagThenTheEnvironmentThenTheDefault) {
  ::setenv(kStateDirEnv, "/srv/from-env", 1);
  EXPECT_EQ(resolve_state_dir("/srv/flag"), "/srv/flag");
  EXPECT_EQ(resolve_state_dir(""), "/srv/from-env");
  ::setenv(kStateDirEnv, "", 1);
  EXPECT_EQ(resolve_state_dir(""), "/var/lib/nvhv");
  ::unsetenv(kStateDirEnv);
  EXPECT_EQ(resolve_state_dir(""), "/var/lib/nvhv");
  EXPECT_EQ(resolve_state_dir("rel/dir"), fs::current_path() / "rel/dir") << "made absolute for detached VMs";
}

TEST(Registry, EntriesSurviveTheirJsonForm) {
  const Entry e = sample("vm0");
  const json doc = e.to_json();
  EXPECT_EQ(doc["format"], "nvhv-registry-entry");
  EXPECT_EQ(doc["version"], 1);
  const Entry back = Entry::from_json(doc, "x");
  EXPECT_EQ(back.to_json(), doc);
  Entry bare;
  bare.name = "bare";
  bare.config = "/c.json";
  const json bare_doc = bare.to_json();
  EXPECT_TRUE(bare_doc["api_socket"].is_null());
  EXPECT_TRUE(bare_doc["pid"].is_null());
  EXPECT_EQ(Entry::from_json(bare_doc, "x").to_json(), bare_doc);
  // A later nvhv of the same version may add fields: they are ignored, not refused.
  json extended = doc;
  extended["added_later"] = 1;
  EXPECT_EQ(Entry::from_json(extended, "x").name, "vm0");
}

TEST(Registry, MalformedEntriesAreRefusedNamingFileAndField) {
  const json good = sample("vm0").to_json();
  auto with = [&](const std::string& key, const json& value) {
    json d = good;
    d[key] = value;
    return d;
  };
  auto without = [&](const std::string& key) {
    json d = good;
    d.erase(key);
    return d;
  };
  EXPECT_EQ(error_of(json::array()), "vms/x.json: not a registry entry: expected a JSON object");
  EXPECT_EQ(error_of(without("format")), "vms/x.json: not a registry entry: /format is missing, expected \"nvhv-registry-entry\"");
  EXPECT_EQ(error_of(with("version", 2)), "vms/x.json: registry entry version 2 is not supported (this nvhv reads version 1)");
  EXPECT_EQ(error_of(without("name")), "vms/x.json: /name: required field is missing");
  EXPECT_EQ(error_of(with("name", "a/b")), "vms/x.json: /name: must be 1-64 characters of letters, digits, '-', '_' or '.'");
  EXPECT_EQ(error_of(with("config", 7)), "vms/x.json: /config: expected a string");
  EXPECT_EQ(error_of(with("config", "guest.json")), "vms/x.json: /config: must be an absolute path");
  EXPECT_EQ(error_of(with("autostart", "yes")), "vms/x.json: /autostart: expected a boolean");
  EXPECT_EQ(error_of(with("pid", -4)), "vms/x.json: /pid: expected a non-negative integer");
  EXPECT_EQ(error_of(with("pid", 0)), "vms/x.json: /pid: not a process id");
  EXPECT_EQ(error_of(with("last_checkpoint", 5)), "vms/x.json: /last_checkpoint: expected an object");
  EXPECT_EQ(error_of(with("status", "paused")),
            "vms/x.json: /status: unknown status \"paused\" (expected one of registered, starting, running, "
            "checkpointed, stopped, failed, swapped_out)");
}

TEST(Registry, UpdateWritesWholeFilesAndListSortsAndReportsBadOnes) {
  TempDir dir;
  Registry reg(dir.file("state"));
  EXPECT_TRUE(reg.list().entries.empty()) << "a missing state directory is an empty registry";
  for (const char* name : {"vm-b", "vm-a"})
    reg.update(name, [&](const std::optional<Entry>& cur) -> std::optional<Entry> {
      EXPECT_FALSE(cur);
      return sample(name);
    });
  // Nothing but the entries (and the lock) is left behind: no temp files.
  std::vector<std::string> files;
  for (const auto& f : fs::directory_iterator(dir.file("state/vms"))) files.push_back(f.path().filename());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"vm-a.json", "vm-b.json"}));
  EXPECT_TRUE(fs::is_directory(dir.file("state/logs")));

  std::ofstream(dir.file("state/vms/broken.json")) << "{";
  std::ofstream(dir.file("state/vms/vm-c.json.tmp.99")) << "{";
  auto listing = reg.list();
  ASSERT_EQ(listing.entries.size(), 2u);
  EXPECT_EQ(listing.entries[0].name, "vm-a");
  EXPECT_EQ(listing.entries[1].name, "vm-b");
  ASSERT_EQ(listing.errors.size(), 1u);
  EXPECT_EQ(listing.errors[0], dir.file("state/vms/broken.json") + ": not a registry entry: the file is not valid JSON");
  EXPECT_THROW(reg.find("broken"), RegistryError);
  EXPECT_FALSE(reg.find("nobody"));

  // Declining to change leaves the file as it was; an unreadable entry is replaced only on request.
  const auto before = reg.find("vm-a")->updated_at;
  reg.update("vm-a", [](const std::optional<Entry>&) -> std::optional<Entry> { return std::nullopt; });
  EXPECT_EQ(reg.find("vm-a")->updated_at, before);
  EXPECT_THROW(reg.update("broken", [](const std::optional<Entry>&) { return std::optional<Entry>(sample("broken")); }), RegistryError);
  reg.update("broken", [](const std::optional<Entry>& cur) {
    EXPECT_FALSE(cur);
    return std::optional<Entry>(sample("broken"));
  }, /*replace_unreadable=*/true);
  EXPECT_EQ(reg.find("broken")->status, VmStatus::checkpointed);

  EXPECT_TRUE(reg.remove("vm-a"));
  EXPECT_FALSE(reg.remove("vm-a"));
  EXPECT_THROW(reg.update("../x", [](const std::optional<Entry>&) { return std::optional<Entry>(); }), RegistryError);
}

TEST(Registry, ConcurrentUpdatesNeverLoseOne) {
  TempDir dir;
  Registry reg(dir.file("state"));
  constexpr int kThreads = 6, kEach = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      Registry mine(dir.file("state"));  // each its own lock file description, as separate processes have
      for (int i = 0; i < kEach; ++i)
        mine.update("counter", [](const std::optional<Entry>& cur) {
          Entry e = cur.value_or(sample("counter"));
          e.detail = std::to_string(cur ? std::stoi(cur->detail) + 1 : 1);
          return std::optional<Entry>(e);
        });
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(reg.find("counter")->detail, std::to_string(kThreads * kEach));
}

TEST(Registry, ARecordedPidIsAliveOnlyWhileThatVeryProcessRuns) {
  Entry e = sample("vm0");
  e.status = VmStatus::running;
  e.pid = ::getpid();
  e.pid_start_ticks = process_start_ticks(::getpid()).value();
  EXPECT_TRUE(e.process_alive());
  EXPECT_EQ(e.effective_status(), "running");
  e.pid_start_ticks += 1;  // the pid was reused by another process
  EXPECT_FALSE(e.process_alive());
  EXPECT_EQ(e.effective_status(), "dead");

  // An exited child, before and after it is reaped.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  e.pid = child;
  e.pid_start_ticks = 0;
  for (int i = 0; i < 500 && process_start_ticks(child); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_FALSE(process_start_ticks(child)) << "a zombie is not a running VM";
  int status;
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(e.process_alive());
  // Only starting/running entries claim a live process.
  e.pid = ::getpid();
  e.status = VmStatus::checkpointed;
  EXPECT_FALSE(e.process_alive());
  EXPECT_EQ(e.effective_status(), "checkpointed");
}

TEST(Registry, NamesFollowTheConfigRule) {
  EXPECT_TRUE(valid_vm_name("vm-0_a.b"));
  EXPECT_FALSE(valid_vm_name(""));
  EXPECT_FALSE(valid_vm_name(std::string(65, 'a')));
  EXPECT_FALSE(valid_vm_name("a/b"));
  EXPECT_FALSE(valid_vm_name("a b"));
}

}  // namespace
}  // namespace nvhv::fleet
