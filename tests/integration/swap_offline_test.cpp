// `nvhv swap-in guest.json --from FILE`: the offline counterpart of `nvhv swap-out`. It restores
// a swapped-out testos VM into its backing without running it; the next plain `nvhv run` resumes
// the guest (ticks continue, no second boot), and every refusal leaves the image and the swap
// file exactly as they were.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/integration/nvhv_support.hpp"
#include "tests/unit/persistence_test_util.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The hash of a file, or 0 when it does not exist (so "still absent" compares equal too).
uint64_t hash_or_zero(const std::string& path) {
  return fs::exists(path) ? persistence::test::file_hash(path) : 0;
}

class SwapOffline : public ::testing::Test {
 protected:
  void SetUp() override {
    skip_without_kvm();
    auto cfg = testos_config("offline", 1, 64, "tick_ms=20 mem_mib=8");
    cfg["memory"]["backing"] = dir.file("vm.img");
    config = write_config(dir, cfg, "vm.json");
    // A VM of another shape (the identity a swap file is checked against is the shape, not the name).
    auto other_cfg = cfg;
    other_cfg["name"] = "other";
    other_cfg["memory"]["size_mib"] = 96;
    other_cfg["memory"]["backing"] = dir.file("other.img");
    other_config = write_config(dir, other_cfg, "other.json");
    // The same VM on another backing.
    auto twin_cfg = cfg;
    twin_cfg["memory"]["backing"] = dir.file("twin.img");
    twin_config = write_config(dir, twin_cfg, "twin.json");
  }

  RunResult nvhv(const std::vector<std::string>& args) {
    std::vector<std::string> argv{nvhv_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 60s);
  }

  // Runs `cfg` until `more` further ticks after last_tick, then power-fails it (exit 0).
  // A checkpoint may split a serial line; the resumed run prints the rest of it, so only whole
  // tick lines are counted and the split one is skipped on both sides.
  void run_and_checkpoint(const std::string& cfg, bool expect_boot, int more = 3) {
    ChildProcess vm({nvhv_bin(), "run", cfg});
    const long target = last_tick + more;
    ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick " + std::to_string(target) + " ok$"), 60s)) << vm.describe();
    vm.signal(SIGPWR);
    auto status = vm.wait(60s);
    ASSERT_TRUE(status) << vm.describe();
    ASSERT_EQ(*status, 0) << vm.describe();
    auto lines = vm.stdout_lines();
    if (vm.stdout_ended_mid_line()) lines.pop_back();
    const auto s = summarize(lines);
    EXPECT_EQ(s.boots, expect_boot ? 1 : 0) << vm.describe();
    EXPECT_EQ(s.corrupt, 0) << vm.describe();
    ASSERT_FALSE(s.ticks.empty()) << vm.describe();
    // The first whole tick after a resume is last_tick+1, or +2 when the checkpoint split it.
    const long first = s.ticks.front();
    if (!expect_boot) {
      EXPECT_TRUE(first == last_tick + 1 || first == last_tick + 2) << vm.describe();
    }
    EXPECT_TRUE(consecutive(s.ticks, first)) << vm.describe();
    last_tick = s.ticks.back();
  }

  TempDir dir;
  std::string config, other_config, twin_config;
  std::string swap = dir.file("vm.swap");
  long last_tick = 0;
};

TEST_F(SwapOffline, SwapInWithoutRunningThenAPlainRunResumes) {
  run_and_checkpoint(config, true);
  auto out = nvhv({"swap-out", config, "--to", swap});
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_EQ(fs::file_size(dir.file("vm.img")), 64u * 1024) << "the image was not released";

  auto in = nvhv({"swap-in", config, "--from", swap});
  ASSERT_EQ(in.status, 0) << in.err;
  EXPECT_TRUE(contains(in.err, "swapped in")) << in.err;
  EXPECT_EQ(summarize(lines_of(in.out)).boots, 0) << "swap-in ran the guest: " << in.out;
  EXPECT_GT(fs::file_size(dir.file("vm.img")), 64u * 1024 * 1024) << "the image was not restored";

  // Rerunning it is a no-op that changes neither file.
  const uint64_t image_before = hash_or_zero(dir.file("vm.img")), swap_before = hash_or_zero(swap);
  auto again = nvhv({"swap-in", config, "--from", swap});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(contains(again.err, "nothing to restore")) << again.err;
  EXPECT_EQ(hash_or_zero(dir.file("vm.img")), image_before);
  EXPECT_EQ(hash_or_zero(swap), swap_before);

  run_and_checkpoint(config, false);
  // And the same round trip once more, incrementally against the consumed file.
  ASSERT_EQ(nvhv({"swap-out", config, "--to", swap}).status, 0);
  ASSERT_EQ(nvhv({"swap-in", config, "--from", swap}).status, 0);
  run_and_checkpoint(config, false);
}

TEST_F(SwapOffline, RefusalsChangeNothing) {
  run_and_checkpoint(config, true);
  ASSERT_EQ(nvhv({"swap-out", config, "--to", swap}).status, 0);

  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string target;  // the backing that must stay as it was
    std::string expect;  // in the message
    int status;
  };
  std::ofstream(dir.file("junk.swap")) << "not a swap file";
  const Case cases[] = {
      {"missing swap file", {"swap-in", config, "--from", dir.file("absent.swap")}, dir.file("vm.img"), "absent.swap", 1},
      {"not a swap file", {"swap-in", config, "--from", dir.file("junk.swap")}, dir.file("vm.img"), "junk.swap", 1},
      {"another VM's shape", {"swap-in", other_config, "--from", swap}, dir.file("other.img"), "memory", 1},
      {"no --from", {"swap-in", config}, dir.file("vm.img"), "--from", 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const uint64_t target_before = hash_or_zero(c.target), swap_before = hash_or_zero(swap);
    auto r = nvhv(c.args);
    EXPECT_EQ(r.status, c.status) << r.err;
    EXPECT_TRUE(contains(r.err, c.expect)) << r.err;
    EXPECT_EQ(hash_or_zero(c.target), target_before);
    EXPECT_EQ(hash_or_zero(swap), swap_before);
  }
  EXPECT_FALSE(fs::exists(dir.file("other.img"))) << "a refused swap-in created its target";

  // Swapped in and running: a second swap-in of the consumed file elsewhere is refused, and the
  // running VM's image and the file stay as they are.
  ASSERT_EQ(nvhv({"swap-in", config, "--from", swap}).status, 0);
  ChildProcess vm({nvhv_bin(), "run", config});
  ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick \\d+ ok$"), 60s)) << vm.describe();
  const uint64_t swap_before = hash_or_zero(swap);
  auto twice = nvhv({"swap-in", twin_config, "--from", swap});
  EXPECT_EQ(twice.status, 1) << twice.err;
  EXPECT_TRUE(contains(twice.err, "already swapped in")) << twice.err;
  EXPECT_FALSE(fs::exists(dir.file("twin.img")));
  EXPECT_EQ(hash_or_zero(swap), swap_before);
  vm.signal(SIGPWR);
  ASSERT_EQ(vm.wait(60s), 0) << vm.describe();
}

}  // namespace
}  // namespace nvhv::test
