// Swapping a checkpointed testos VM out to a file and back in onto another backing with the real
// binaries: the guest goes on ticking without a second boot or corruption, every crash during a
// swap leaves the VM recoverable by rerunning the command (and never in two live copies), and
// damaged swap files are refused without touching anything.
//
// `nvhv swap-out` and `nvhv run --swap-in` are used when the binary has them; until then
// nvhv_swap_driver calls the same entry points (vmm/swap_commands.hpp).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "persistence/swap_image.hpp"
#include "tests/integration/nvhv_support.hpp"
#include "tests/unit/persistence_test_util.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;

constexpr int kKilled = 128 + SIGKILL;

std::string driver_bin() { return build_dir() + "/bin/nvhv_swap_driver"; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Tick numbers, including a line the checkpoint split: its start ("testo") was printed before
// the power-fail checkpoint, the rest ("s: tick 43 ok") by the resumed guest.
std::vector<long> tick_numbers(const std::vector<std::string>& lines) {
  static const std::regex tick(R"((^|: )tick (\d+) (ok|CORRUPT)$)");
  std::vector<long> out;
  for (const auto& l : lines) {
    std::smatch m;
    if (std::regex_search(l, m, tick)) out.push_back(std::stol(m[2]));
  }
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Which spelling of the swap commands this build has.
struct Cli {
  bool native_out = false;
  bool native_in = false;
  static Cli detect() {
    Cli c;
    c.native_out = contains(run_command({nvhv_bin(), "--help"}, 10s).out, "swap-out");
    c.native_in = contains(run_command({nvhv_bin(), "run", "--help"}, 10s).out, "--swap-in");
    return c;
  }
  std::vector<std::string> swap_out(const std::string& cfg, const std::string& file) const {
    if (native_out) return {nvhv_bin(), "swap-out", cfg, "--to", file};
    return {driver_bin(), "swap-out", cfg, file};
  }
  // Swap-in only (the driver stops there; `nvhv run --swap-in` would go on to run the guest).
  std::vector<std::string> swap_in(const std::string& cfg, const std::string& file) const {
    return {driver_bin(), "swap-in", cfg, file};
  }
  std::vector<std::string> run(const std::string& cfg, const std::string& swap_in_file = "") const {
    if (swap_in_file.empty()) return {nvhv_bin(), "run", cfg};
    return {nvhv_bin(), "run", cfg, "--swap-in", swap_in_file};
  }
};

std::vector<std::string> with_fault(const std::string& point) {
  return point.empty() ? std::vector<std::string>{} : std::vector<std::string>{"NVHV_FAULT_INJECT=" + point};
}

int run_with_env(const std::vector<std::string>& argv, const std::vector<std::string>& env, std::string* output = nullptr) {
  ChildProcess p(argv, ChildProcess::Options{env, true});
  auto status = p.wait(120s);
  if (output) *output = p.describe();
  return status ? *status : -1;
}

// A testos VM with two backings, a.img and b.img, moved between them through one swap file.
class SwapVm : public ::testing::Test {
 protected:
  void SetUp() override {
    skip_without_kvm();
    cli = Cli::detect();
    for (int i = 0; i < 2; ++i) {
      auto cfg = testos_config("swap", 2, 128, "tick_ms=20 mem_mib=16");
      cfg["memory"]["backing"] = dir.file(i == 0 ? "a.img" : "b.img");
      config[i] = write_config(dir, cfg, i == 0 ? "a.json" : "b.json");
    }
  }

  // Runs the guest on backing `which` until `more` further ticks, then stops it with SIGPWR.
  // Checks the serial contract: a boot only when `boot`, ticks consecutive after last_tick.
  std::string partial_tail_;
  void run_and_checkpoint(int which, bool boot, int more = 2, const std::string& swap_in_file = "") {
    ChildProcess vm(cli.run(config[which], swap_in_file));
    const long target = last_tick + more;
    ASSERT_TRUE(vm.wait_stdout(std::regex("^testos: tick " + std::to_string(target) + " (ok|CORRUPT)$"), 60s))
        << vm.describe();
    vm.signal(SIGPWR);
    auto status = vm.wait(60s);
    ASSERT_TRUE(status) << vm.describe();
    ASSERT_EQ(*status, 0) << vm.describe();
    // A checkpoint can land between two bytes of a serial line: the resumed run prints the
    // rest, so a partial last line is joined with the next run's first line.
    auto lines = vm.stdout_lines();
    if (!partial_tail_.empty() && !lines.empty() && !boot) lines[0] = partial_tail_ + lines[0];
    partial_tail_.clear();
    if (vm.stdout_ended_mid_line() && !lines.empty()) {
      partial_tail_ = lines.back();
      lines.pop_back();
    }
    const auto s = summarize(lines);
    EXPECT_EQ(s.boots, boot ? 1 : 0) << vm.describe();
    EXPECT_EQ(s.corrupt, 0) << vm.describe();
    const auto ticks = tick_numbers(lines);
    ASSERT_FALSE(ticks.empty()) << vm.describe();
    EXPECT_TRUE(consecutive(ticks, last_tick + 1)) << "after tick " << last_tick << "\n" << vm.describe();
    last_tick = ticks.back();
  }

  // image=<kind>/<state>[/<resumable|no_checkpoint>] swap=<valid|invalid|absent>[/<live|consumed>]
  std::string status(int which) {
    auto r = run_command({driver_bin(), "status", config[which], swap}, 30s);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  }
  // After a crash: the VM is still somewhere complete, and not live in two places.
  void expect_recoverable(int which, const std::string& when) {
    const std::string s = status(which);
    const bool image_resumable = contains(s, "/resumable");
    const bool image_live = contains(s, "image=image/in_use/resumable");
    const bool swap_valid = contains(s, "swap=valid");
    const bool swap_live = contains(s, "swap=valid/live");
    EXPECT_TRUE(image_resumable || swap_valid) << when << ": the VM is lost: " << s;
    EXPECT_FALSE(image_live && swap_live) << when << ": the VM is live twice: " << s;
  }

  // One move of the VM from its current backing to the other, with a crash injected in the
  // swap-out and in the swap-in (a fault point, or a SIGKILL after a delay), each recovered by
  // running the command again; then the guest runs on.
  void move_with_crashes(const std::string& out_fault, const std::string& in_fault,
                         std::optional<std::chrono::microseconds> out_kill = {},
                         std::optional<std::chrono::microseconds> in_kill = {}) {
    const int from = current, to = 1 - current;
    crash(cli.swap_out(config[from], swap), out_fault, out_kill);
    expect_recoverable(from, "swap-out crash " + out_fault);
    std::string log;
    ASSERT_EQ(run_with_env(cli.swap_out(config[from], swap), {}, &log), 0) << log;
    crash(cli.swap_in(config[to], swap), in_fault, in_kill);
    expect_recoverable(to, "swap-in crash " + in_fault);
    ASSERT_EQ(run_with_env(cli.swap_in(config[to], swap), {}, &log), 0) << log;
    current = to;
    run_and_checkpoint(current, false);
  }

  void crash(const std::vector<std::string>& argv, const std::string& fault,
             std::optional<std::chrono::microseconds> kill_after) {
    if (!fault.empty()) {
      std::string log;
      EXPECT_EQ(run_with_env(argv, with_fault(fault), &log), kKilled) << fault << " was not reached\n" << log;
      ++kills;
      return;
    }
    ChildProcess p(argv, ChildProcess::Options{{}, true});
    std::this_thread::sleep_for(*kill_after);
    p.signal(SIGKILL);
    auto st = p.wait(60s);
    ASSERT_TRUE(st) << p.describe();
    ++kills;
  }

  Cli cli;
  TempDir dir;
  std::string config[2];
  std::string swap = dir.file("vm.swap");
  int current = 0;
  long last_tick = 0;
  int kills = 0;
};

TEST_F(SwapVm, SwapOutAndInOntoAnotherBackingContinuesTheGuest) {
  run_and_checkpoint(0, true, 5);
  std::string log;
  ASSERT_EQ(run_with_env(cli.swap_out(config[0], swap), {}, &log), 0) << log;
  EXPECT_EQ(std::filesystem::file_size(dir.file("a.img")), 64u * 1024) << "the image was not released";
  EXPECT_TRUE(contains(status(0), "swap=valid/live"));

  // A plain run of the swapped-out backing must neither boot nor resume anything.
  auto plain = run_command(cli.run(config[0]), 30s);
  EXPECT_NE(plain.status, 0) << plain.out << plain.err;
  EXPECT_EQ(summarize(lines(plain.out)).boots, 0) << plain.out;

  // Onto b.img: `nvhv run --swap-in` when it exists, else the driver then a plain run.
  if (cli.native_in) {
    run_and_checkpoint(1, false, 3, swap);
  } else {
    ASSERT_EQ(run_with_env(cli.swap_in(config[1], swap), {}, &log), 0) << log;
    run_and_checkpoint(1, false, 3);
  }
  EXPECT_TRUE(contains(status(1), "swap=valid/consumed"));
  // The consumed file cannot be swapped in again anywhere else.
  std::filesystem::remove(dir.file("a.img"));
  EXPECT_NE(run_with_env(cli.swap_in(config[0], swap), {}, &log), 0) << log;
  EXPECT_TRUE(contains(log, "already swapped in")) << log;
  EXPECT_FALSE(std::filesystem::exists(dir.file("a.img")));

  // And back again, incrementally (the swap file is the one b.img came from).
  ASSERT_EQ(run_with_env(cli.swap_out(config[1], swap), {}, &log), 0) << log;
  EXPECT_TRUE(contains(log, "incremental")) << log;
  ASSERT_EQ(run_with_env(cli.swap_in(config[0], swap), {}, &log), 0) << log;
  run_and_checkpoint(0, false, 3);
}

TEST_F(SwapVm, DamagedSwapFilesAreRefusedAndNothingIsTouched) {
  run_and_checkpoint(0, true, 3);
  std::string log;
  ASSERT_EQ(run_with_env(cli.swap_out(config[0], swap), {}, &log), 0) << log;
  const auto pristine = persistence::test::read_file(swap);
  auto write_swap = [&](const std::vector<uint8_t>& bytes) {
    std::ofstream(swap, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  };
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  std::vector<uint8_t> corrupt = pristine;
  corrupt[64 * 1024 + 12345] ^= 0x10;  // inside the chunk data
  std::vector<uint8_t> cut(pristine.begin(), pristine.begin() + static_cast<long>(pristine.size() / 2));
  std::vector<uint8_t> cut_header(pristine.begin(), pristine.begin() + 100);
  const Case cases[] = {
      {"corrupt chunk", corrupt, "corrupt"},
      {"truncated", cut, "truncated"},
      {"truncated header", cut_header, "truncated"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    write_swap(c.bytes);
    const uint64_t before = persistence::test::file_hash(swap);
    ASSERT_NE(run_with_env(cli.swap_in(config[1], swap), {}, &log), 0) << log;
    EXPECT_TRUE(contains(log, c.expect) && contains(log, swap)) << log;
    EXPECT_FALSE(std::filesystem::exists(dir.file("b.img")));
    EXPECT_EQ(persistence::test::file_hash(swap), before);
    if (cli.native_in) {
      auto r = run_command(cli.run(config[1], swap), 60s);
      EXPECT_NE(r.status, 0);
      EXPECT_EQ(summarize(lines(r.out)).boots, 0) << r.out;
      EXPECT_EQ(persistence::test::file_hash(swap), before);
    }
  }
  // The intact file still brings the VM back.
  write_swap(pristine);
  ASSERT_EQ(run_with_env(cli.swap_in(config[1], swap), {}, &log), 0) << log;
  current = 1;
  run_and_checkpoint(1, false);
}

TEST_F(SwapVm, ACrashAtEverySwapStepNeverLosesTheVm) {
  run_and_checkpoint(0, true, 3);
  const auto& outs = persistence::kSwapOutFaultPoints;
  const auto& ins = persistence::kSwapInFaultPoints;
  const size_t cycles = std::max(outs.size(), ins.size());
  for (size_t i = 0; i < cycles; ++i) {
    SCOPED_TRACE("cycle " + std::to_string(i) + ": " + outs[i % outs.size()] + " / " + ins[i % ins.size()]);
    move_with_crashes(outs[i % outs.size()], ins[i % ins.size()]);
    if (HasFatalFailure()) return;
  }
  EXPECT_GE(kills, 2 * static_cast<int>(cycles));
}

TEST_F(SwapVm, SigkillAtRandomTimesNeverLosesTheVm) {
  run_and_checkpoint(0, true, 3);
  // How long an uninterrupted swap-out and swap-in take here, to spread the kills over them.
  auto timed = [&](const std::vector<std::string>& argv) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string log;
    EXPECT_EQ(run_with_env(argv, {}, &log), 0) << log;
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  };
  const auto out_time = timed(cli.swap_out(config[0], swap));
  const auto in_time = timed(cli.swap_in(config[1], swap));
  current = 1;
  run_and_checkpoint(1, false);
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  auto pick = [&](std::chrono::microseconds span) {
    return std::chrono::microseconds(static_cast<long>(rng() % static_cast<uint64_t>(span.count() * 12 / 10 + 1)));
  };
  constexpr int kCycles = 30;
  for (int i = 0; i < kCycles; ++i) {
    const auto a = pick(out_time), b = pick(in_time);
    SCOPED_TRACE("cycle " + std::to_string(i) + ": kill after " + std::to_string(a.count()) + " / " +
                 std::to_string(b.count()) + " us");
    move_with_crashes("", "", a, b);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(kills, 2 * kCycles);
}

}  // namespace
}  // namespace nvhv::test
