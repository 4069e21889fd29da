// Incremental swap-out through the API with KVM's dirty log (docs/swap-format.md, "Incremental
// swap-out"): a testos VM swapped in from a file and swapped out again through vm.swap_out writes
// anew only the chunks the guest changed, as the dirty log says, and copies the rest from the file
// it came from; the guest then goes on where it was after every swap-in.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>

#include "tests/integration/checkpoint_support.hpp"
#include "vmm/api/line_client.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kMemMib = 64;
constexpr uint64_t kChunks = kMemMib / 2;  // the default 2 MiB swap chunks
// testos rewrites 4 MiB (two chunks) every tick; its code, stacks, page tables and clock pages
// touch a few more. Anything near the whole of RAM means the dirty log was not used.
constexpr uint64_t kFewChunks = 8;

class SwapDirtyLog : public ::testing::Test {
 protected:
  void SetUp() override {
    skip_without_kvm();
    auto cfg = testos_config("dirty", 2, kMemMib, "tick_ms=10 mem_mib=4");
    cfg["memory"]["backing"] = dir.file("vm.img");
    cfg["api"] = {{"socket", socket}};
    config = write_config(dir, cfg);
  }

  // Starts nvhv (swapping in from `swap_file` first, if given) and waits for `more` ticks beyond
  // the last one seen.
  ChildProcess& start(const std::string& swap_file = "", long more = 5) {
    std::vector<std::string> argv{nvhv_bin(), "run", config};
    if (!swap_file.empty()) argv.insert(argv.end(), {"--swap-in", swap_file});
    const long target = transcript().last_tick() + more;  // the guest ticked on until it stopped
    runs.push_back(std::make_unique<ChildProcess>(argv));
    ChildProcess& run = *runs.back();
    resumed.push_back(runs.size() > 1);
    EXPECT_TRUE(run.wait_stdout(std::regex("^testos: tick " + std::to_string(target) + " ok$"), 60s)) << run.describe();
    return run;
  }

  Transcript transcript() const {
    Transcript t;
    for (size_t i = 0; i < runs.size(); ++i) t.add_run(*runs[i], resumed[i]);
    return t;
  }

  // vm.swap_out on the running VM; the process must then exit 0. Returns the result.
  json swap_out(ChildProcess& run, json params) {
    auto client = api::LineClient::connect(socket);
    json r = client.call("vm.swap_out", params, 60s);
    EXPECT_TRUE(r.contains("result")) << r.dump() << "\n" << run.describe();
    EXPECT_EQ(run.wait(30s).value_or(-1), 0) << run.describe();
    json result = r.value("result", json::object());
    std::printf("vm.swap_out %s: %s; dirty map %s\n", params.dump().c_str(), result.value("figures", "?").c_str(),
                result.value("dirty_map", json()).dump().c_str());
    return result;
  }

  std::string transcript_problems() const {
    const Transcript t = transcript();
    if (t.boots() != 1) return "booted " + std::to_string(t.boots()) + " times";
    return t.check();
  }

  TempDir dir;
  std::string socket = dir.file("api.sock");
  std::string config;
  std::vector<std::unique_ptr<ChildProcess>> runs;
  std::vector<bool> resumed;  // per run: it resumed a checkpoint (all but the first)
};

// What an incremental swap-out with the dirty map must report.
void expect_dirty_map_used(const json& r, bool verified) {
  SCOPED_TRACE(r.dump());
  EXPECT_EQ(r["incremental"], true);
  const json& chunks = r["chunks"];
  const json& map = r["dirty_map"];
  EXPECT_EQ(map["used"], true);
  EXPECT_EQ(map["clean_verified"], verified);
  EXPECT_TRUE(map["why_not"].is_null());
  EXPECT_EQ(map["misses"], 0);
  const uint64_t dirty = map["marked_dirty"];
  EXPECT_GE(dirty, 2u);  // the workload's two chunks at least
  EXPECT_LE(dirty, kFewChunks);
  EXPECT_EQ(chunks["total"], kChunks);
  EXPECT_EQ(chunks["rewritten"], dirty);
  EXPECT_EQ(chunks["reused"], kChunks - dirty);
  // A trusted map reads only the dirty chunks from RAM; a verified one reads them all.
  const uint64_t read = chunks["ram_read_bytes"];
  if (verified)
    EXPECT_EQ(read, uint64_t{kMemMib} << 20);
  else
    EXPECT_EQ(read, dirty * (2u << 20));
}

TEST_F(SwapDirtyLog, SwapOutAfterSwapInWritesOnlyTheChunksTheGuestChanged) {
  const std::string first = dir.file("first.swap"), second = dir.file("second.swap");

  // A full swap-out: nothing to be incremental against.
  json r = swap_out(start(), {{"path", first}});
  EXPECT_EQ(r["incremental"], false) << r.dump();
  EXPECT_EQ(r["chunks"]["rewritten"], kChunks) << r.dump();
  // testos writes a small part of its RAM: the rest of the new image is holes, never read.
  EXPECT_GT(r["chunks"]["hole_bytes"], uint64_t{kMemMib} << 19) << r.dump();
  EXPECT_LT(r["chunks"]["hole_bytes"], uint64_t{kMemMib} << 20) << r.dump();
  EXPECT_EQ(r["dirty_map"]["used"], false) << r.dump();

  // Swapped in, run a little, swapped out into the same file with the clean chunks verified:
  // the dirty log must name every chunk that changed.
  ChildProcess& second_run = start(first);
  r = swap_out(second_run, {{"path", first}, {"verify_clean", true}});
  expect_dirty_map_used(r, true);
  EXPECT_TRUE(any_line_matches(second_run.stderr_lines(),
                               std::regex("swap-out figures: .*incremental: \\d+ reused, \\d+ rewritten.*dirty map: \\d+ "
                                          "chunks marked dirty, the clean ones verified, 0 misses")))
      << second_run.describe();

  // Again, into another file, trusting the map: the clean chunks come from the file the VM was
  // swapped in from without being read from RAM. The guest must find all of its memory after.
  r = swap_out(start(first), {{"path", second}});
  expect_dirty_map_used(r, false);

  // Resumed from a later checkpoint, the VM has run unobserved since the swap-in: no map, every
  // chunk compared with the swap file it came from.
  ChildProcess& fourth = start(second);
  auto client = api::LineClient::connect(socket);
  ASSERT_TRUE(client.call("vm.power_fail", nullptr, 30s).contains("result"));
  ASSERT_EQ(fourth.wait(30s).value_or(-1), 0) << fourth.describe();
  r = swap_out(start(), {{"path", second}});
  EXPECT_EQ(r["incremental"], true) << r.dump();
  EXPECT_EQ(r["dirty_map"]["used"], false) << r.dump();
  EXPECT_TRUE(r["dirty_map"]["why_not"].get<std::string>().find("gen=2") != std::string::npos) << r.dump();
  EXPECT_LE(r["chunks"]["rewritten"].get<uint64_t>(), kFewChunks) << r.dump();

  // The guest goes on ticking where it was, without a second boot or corruption.
  ChildProcess& last = start(second);
  last.signal(SIGTERM);
  ASSERT_EQ(last.wait(30s).value_or(-1), 0) << last.describe();
  EXPECT_EQ(transcript_problems(), "");
}

}  // namespace
}  // namespace nvhv::test
