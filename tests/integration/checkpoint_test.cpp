// Power-fail checkpoints and transparent resume of testos (issue: the VM survives the loss of
// its host). Every run is a real nvhv process on a real image file.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "persistence/backing.hpp"
#include "persistence/image.hpp"
#include "tests/integration/checkpoint_support.hpp"
#include "vmm/base/time_slice.hpp"
#include "vmm/config.hpp"
#include "vmm/kvm/kvm.hpp"

namespace nvhv::test {
namespace {

using namespace std::chrono_literals;

const std::regex kResumed(R"(nvhv: resumed gen=(\d+) in \d+ us)");
const std::regex kCommitted(R"(nvhv: power-fail checkpoint gen=(\d+) vcpu_us=\d+ devices_us=\d+ flush_us=\d+ commit_us=\d+ total_us=\d+ flushed_bytes=\d+)");
const std::regex kTick(R"(^testos: tick \d+ ok$)");

struct PersistentVm {
  explicit PersistentVm(int vcpus = 2, const std::string& cmdline = "tick_ms=10 mem_mib=4") {
    auto cfg = testos_config("persist", vcpus, 64, cmdline);
    cfg["memory"]["backing"] = dir.file("vm.img");
    config = write_config(dir, cfg);
  }
  std::unique_ptr<ChildProcess> start(std::vector<std::string> extra_env = {}, std::vector<std::string> extra_args = {}) {
    std::vector<std::string> argv{nvhv_bin(), "run", config};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    return std::make_unique<ChildProcess>(argv, ChildProcess::Options{std::move(extra_env), false});
  }
  // Waits for `n` tick lines from this run.
  static bool wait_ticks(ChildProcess& run, int n, std::chrono::milliseconds timeout = 20s) {
    for (int i = 0; i < n; ++i)
      if (!run.wait_stdout(kTick, timeout)) return false;
    return true;
  }
  // One run that boots (or resumes), ticks twice and stops at a power-fail checkpoint with exit
  // status 0, recorded in the transcript. Call through ASSERT_NO_FATAL_FAILURE.
  void run_to_checkpoint(bool expect_resume) {
    auto run = start();
    ASSERT_TRUE(wait_ticks(*run, 2)) << run->describe();
    EXPECT_EQ(any_line_matches(run->stderr_lines(), kResumed), expect_resume) << run->describe();
    run->signal(SIGPWR);
    ASSERT_EQ(run->wait(30s).value_or(-1), 0) << run->describe();
    transcript.add_run(*run, expect_resume);
  }
  // The checkpoint the image holds now; it must be resumable.
  persistence::MachineState committed_checkpoint() const {
    const GuestConfig cfg = load_config(config, 64);
    auto backing = persistence::Backing::open(dir.file("vm.img"), 0, false);
    auto image = persistence::Image::open(backing, cfg.identity(), cfg.memory_bytes(), cfg.vcpus);
    if (image.status() != persistence::ImageStatus::resumable) throw std::runtime_error(dir.file("vm.img") + " holds no resumable checkpoint");
    return image.load_checkpoint();
  }
  TempDir dir;
  std::string config;
  Transcript transcript;
};

bool resumed(const ChildProcess& run) { return any_line_matches(run.stderr_lines(), kResumed); }

TEST(Checkpoint, FiftyPowerFailResumeCycles) {
  skip_without_kvm();
  PersistentVm vm(2);
  for (int cycle = 0; cycle <= 50; ++cycle) {
    auto run = vm.start();
    ASSERT_TRUE(PersistentVm::wait_ticks(*run, 2)) << "cycle " << cycle << "\n" << run->describe();
    if (cycle == 50) {
      run->signal(SIGTERM);
    } else {
      run->signal(SIGPWR);
    }
    auto status = run->wait(30s);
    ASSERT_TRUE(status && *status == 0) << "cycle " << cycle << "\n" << run->describe();
    EXPECT_EQ(resumed(*run), cycle > 0) << run->describe();
    if (cycle < 50) {
      ASSERT_TRUE(any_line_matches(run->stderr_lines(), kCommitted)) << run->describe();
    }
    if (cycle > 0) {
      ASSERT_TRUE(any_line_matches(run->stderr_lines(), std::regex("resumed gen=" + std::to_string(cycle) + " "))) << run->describe();
    }
    vm.transcript.add_run(*run, cycle > 0);
  }
  EXPECT_EQ(vm.transcript.boots(), 1);
  EXPECT_EQ(vm.transcript.check(), "");
  EXPECT_GE(vm.transcript.last_tick(), 100);
}

// nvhv enables KVM_CAP_EXCEPTION_PAYLOAD, so a #PF or #DB pending when the vCPUs stop keeps its
// payload in the saved events instead of in a CR2 or DR6 saved too early (vmm/machine.cpp).
TEST(Checkpoint, SavedVcpuEventsCarryExceptionPayloads) {
  skip_without_kvm();
  if (KvmSystem().check_extension(KVM_CAP_EXCEPTION_PAYLOAD) <= 0) GTEST_SKIP() << "no KVM_CAP_EXCEPTION_PAYLOAD";
  PersistentVm vm(2);
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(false));
  const auto state = vm.committed_checkpoint();
  ASSERT_EQ(state.vcpus.size(), 2u);
  for (const auto& v : state.vcpus) EXPECT_TRUE(v.events.flags & KVM_VCPUEVENT_VALID_PAYLOAD) << "flags " << v.events.flags;
}

// A resume takes the restored state as the buffer of the next checkpoint instead of reading
// every register back first (vmm/machine_checkpoint.cpp): the checkpoint after a resume must
// still save as much as one after a cold boot, with this host's TSC frequency.
TEST(Checkpoint, ACheckpointAfterAResumeSavesWhatACheckpointAfterABootSaves) {
  skip_without_kvm();
  PersistentVm vm(2);
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(false));
  const auto booted = vm.committed_checkpoint();
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(true));
  const auto resumed_once = vm.committed_checkpoint();
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(true));
  const auto resumed_twice = vm.committed_checkpoint();
  ASSERT_EQ(booted.vcpus.size(), 2u);
  const uint32_t host_khz = KvmSystem().check_extension(KVM_CAP_GET_TSC_KHZ) > 0 ? booted.vcpus[0].tsc_khz : 0;
  for (const auto* later : {&resumed_once, &resumed_twice}) {
    ASSERT_EQ(later->vcpus.size(), booted.vcpus.size());
    for (size_t i = 0; i < booted.vcpus.size(); ++i) {
      const auto &a = booted.vcpus[i], &b = later->vcpus[i];
      ASSERT_EQ(a.msrs.size(), b.msrs.size()) << "vcpu" << i;
      for (size_t k = 0; k < a.msrs.size(); ++k) EXPECT_EQ(a.msrs[k].index, b.msrs[k].index) << "vcpu" << i << " MSR #" << k;
      EXPECT_EQ(a.xsave.size(), b.xsave.size()) << "vcpu" << i;
      EXPECT_EQ(a.cpuid.size(), b.cpuid.size()) << "vcpu" << i;
      EXPECT_EQ(b.tsc_khz, host_khz) << "vcpu" << i;
      EXPECT_NE(b.regs.rip, 0u) << "vcpu" << i;
    }
  }
  // The guest went on between the checkpoints: they were read from KVM, not copied over.
  auto tsc = [](const persistence::VcpuState& v) -> uint64_t {
    for (const auto& e : v.msrs)
      if (e.index == 0x10) return e.data;  // IA32_TSC
    return 0;
  };
  EXPECT_LT(tsc(booted.vcpus[0]), tsc(resumed_once.vcpus[0]));
  EXPECT_LT(tsc(resumed_once.vcpus[0]), tsc(resumed_twice.vcpus[0]));
  EXPECT_EQ(vm.transcript.boots(), 1);
  EXPECT_EQ(vm.transcript.check(), "");
}

// The event loop, which takes SIGPWR and checkpoints, asks for a short time slice
// (vmm/base/time_slice.hpp), so that it preempts a busy vCPU thread when the notice wakes it;
// the vCPU threads and the main thread keep the default.
TEST(Checkpoint, TheNoticeThreadRunsWithAShortSliceAndVcpuThreadsWithTheDefault) {
  skip_without_kvm();
  PersistentVm vm(2);
  auto run = vm.start();
  ASSERT_TRUE(PersistentVm::wait_ticks(*run, 2)) << run->describe();
  std::map<std::string, long> slice_ns;  // thread name -> se.slice
  const std::string task_dir = "/proc/" + std::to_string(run->pid()) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(task_dir)) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    std::ifstream sched(task.path() / "sched");
    for (std::string line; std::getline(sched, line);) {
      std::smatch m;
      if (std::regex_match(line, m, std::regex(R"(se\.slice\s*:\s*(\d+))"))) slice_ns[name] = std::stol(m[1]);
    }
  }
  run->signal(SIGPWR);
  ASSERT_EQ(run->wait(30s).value_or(-1), 0) << run->describe();
  if (slice_ns.empty()) GTEST_SKIP() << "this kernel does not report se.slice in /proc/PID/task/TID/sched";
  const long short_ns = std::chrono::nanoseconds(kNoticePathSlice).count();
  ASSERT_TRUE(slice_ns.count("event-loop") && slice_ns.count("nvhv") && slice_ns.count("vcpu0") && slice_ns.count("vcpu1"));
  if (slice_ns["vcpu0"] == short_ns) GTEST_SKIP() << "this kernel's default slice is the short one";
  EXPECT_EQ(slice_ns["event-loop"], short_ns);
  EXPECT_NE(slice_ns["nvhv"], short_ns);
  EXPECT_NE(slice_ns["vcpu0"], short_ns);
  EXPECT_NE(slice_ns["vcpu1"], short_ns);
}

// A notice sent while nvhv is still restoring (after main() has held SIGPWR back, before the
// event loop takes it) stays pending: it neither kills nvhv by SIGPWR's default action nor gets
// lost. The resumed run checkpoints as soon as it can, and the next run resumes that checkpoint.
TEST(Checkpoint, ANoticeDuringAResumeIsTakenOnceTheGuestRuns) {
  skip_without_kvm();
  PersistentVm vm(2);
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(false));

  auto second = vm.start();
  // Printed while the image is opened, before the restore.
  ASSERT_TRUE(second->wait_stderr(std::regex("resumable: checkpoint generation 1"), 20s)) << second->describe();
  second->signal(SIGPWR);
  ASSERT_EQ(second->wait(30s).value_or(-1), 0) << second->describe();
  EXPECT_TRUE(resumed(*second)) << second->describe();
  EXPECT_TRUE(any_line_matches(second->stderr_lines(), std::regex("power-fail checkpoint gen=2 "))) << second->describe();
  vm.transcript.add_run(*second, true);

  auto third = vm.start();
  ASSERT_TRUE(PersistentVm::wait_ticks(*third, 2)) << third->describe();
  EXPECT_TRUE(any_line_matches(third->stderr_lines(), std::regex("resumed gen=2 "))) << third->describe();
  third->signal(SIGTERM);
  third->wait(10s);
  vm.transcript.add_run(*third, true);
  EXPECT_EQ(vm.transcript.boots(), 1);
  EXPECT_EQ(vm.transcript.check(), "");
}

TEST(Checkpoint, UnannouncedKillAfterResumeColdBootsWithReason) {
  skip_without_kvm();
  PersistentVm vm(1);
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(false));

  auto second = vm.start();
  ASSERT_TRUE(PersistentVm::wait_ticks(*second, 2)) << second->describe();
  ASSERT_TRUE(resumed(*second));
  second->signal(SIGKILL);
  second->wait(10s);
  vm.transcript.add_run(*second, true);

  auto third = vm.start();
  ASSERT_TRUE(PersistentVm::wait_ticks(*third, 1)) << third->describe();
  EXPECT_FALSE(resumed(*third));
  EXPECT_TRUE(any_line_matches(third->stderr_lines(), std::regex("consumed by a resume"))) << third->describe();
  third->signal(SIGTERM);
  third->wait(10s);
  vm.transcript.add_run(*third, false);
  EXPECT_EQ(vm.transcript.boots(), 2);
  EXPECT_EQ(vm.transcript.check(), "");
}

TEST(Checkpoint, ColdFlagBootsFreshAndRetiresTheCheckpoint) {
  skip_without_kvm();
  PersistentVm vm(1);
  ASSERT_NO_FATAL_FAILURE(vm.run_to_checkpoint(false));
  auto cold = vm.start({}, {"--cold"});
  ASSERT_TRUE(cold->wait_stdout(std::regex("^testos: boot$"), 20s)) << cold->describe();
  EXPECT_FALSE(resumed(*cold));
  EXPECT_TRUE(any_line_matches(cold->stderr_lines(), std::regex("--cold: not resuming checkpoint gen=1"))) << cold->describe();
  cold->signal(SIGKILL);
  cold->wait(10s);
  auto after = vm.start();  // the checkpoint was retired by the cold boot: never resumed later
  ASSERT_TRUE(after->wait_stdout(std::regex("^testos: boot$"), 20s)) << after->describe();
  EXPECT_FALSE(resumed(*after));
}

// With PCI and virtio devices present, their state goes through the same checkpoint.
TEST(Checkpoint, ResumesWithVirtioDevicesConfigured) {
  skip_without_kvm();
  TempDir dir;
  auto cfg = testos_config("devices", 2, 64, "tick_ms=10 mem_mib=2");
  cfg["memory"]["backing"] = dir.file("vm.img");
  std::filesystem::resize_file((std::ofstream(dir.file("disk.img")), dir.file("disk.img")), 8 << 20);
  cfg["disks"] = nlohmann::json::array({{{"path", "disk.img"}}, {{"path", "disk.img"}, {"readonly", true}}});
  cfg["console"] = {{"log", "console.log"}};
  auto config = write_config(dir, cfg);
  Transcript t;
  for (int round = 0; round < 3; ++round) {
    ChildProcess run({nvhv_bin(), "run", config});
    ASSERT_TRUE(run.wait_stdout(kTick, 20s)) << run.describe();
    ASSERT_TRUE(run.wait_stdout(kTick, 20s)) << run.describe();
    EXPECT_EQ(resumed(run), round > 0) << run.describe();
    run.signal(SIGPWR);
    ASSERT_EQ(run.wait(30s).value_or(-1), 0) << run.describe();
    ASSERT_TRUE(any_line_matches(run.stderr_lines(), kCommitted)) << run.describe();
    t.add_run(run, round > 0);
  }
  EXPECT_EQ(t.boots(), 1);
  EXPECT_EQ(t.check(), "");
  // A config whose devices differ is another VM: refused, the image untouched.
  cfg["disks"] = nlohmann::json::array({{{"path", "disk.img"}}});
  auto other = run_command({nvhv_bin(), "run", write_config(dir, cfg, "other.json")}, 20s);
  EXPECT_EQ(other.status, 1) << other.err;
  EXPECT_NE(other.err.find("disks"), std::string::npos) << other.err;
}

// nvhv dies by SIGKILL at random points of the checkpoint (and resume) path; every next start
// must either resume a complete checkpoint with the ticks continuing or cold-boot saying why,
// and the guest must never see corrupt memory.
TEST(Checkpoint, CrashInjectionNeverResumesATornCheckpoint) {
  skip_without_kvm();
  PersistentVm vm(2, "tick_ms=5 mem_mib=2");
  const char* points[] = {"checkpoint:after-pause", "checkpoint:after-prepare", "checkpoint:after-ram-flush",
                          "checkpoint:after-commit", "resume:after-restore",   "resume:after-consume"};
  std::mt19937 rng(20261121);
  const int kTrials = 220;
  int resumes = 0, cold_boots = 0, committed = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    // A third of the trials use a named crash point, the rest kill at a random moment.
    bool use_point = trial % 3 == 0;
    std::string point = use_point ? points[(trial / 3) % std::size(points)] : "";
    std::vector<std::string> env;
    if (use_point) env.push_back("NVHV_FAULT_INJECT=" + point);
    auto run = vm.start(env);
    bool is_resume_point = point.rfind("resume:", 0) == 0;
    if (is_resume_point) {
      // With a checkpoint to resume, the run dies at the crash point before the guest runs;
      // without one it cold-boots and goes on like any other run.
      bool ticked = run->wait_stdout(kTick, 20s).has_value();
      auto status = run->wait(ticked ? 1ms : 20s);
      if (!ticked) {
        ASSERT_TRUE(status) << run->describe();
        ASSERT_EQ(*status, 128 + SIGKILL) << run->describe();
        ASSERT_TRUE(any_line_matches(run->stderr_lines(), std::regex("resumable"))) << run->describe();
        vm.transcript.add_run(*run, false);
        continue;
      }
    }
    if (!PersistentVm::wait_ticks(*run, 2)) {
      auto status = run->wait(1ms);
      FAIL() << "trial " << trial << " point '" << point << "' status " << (status ? *status : -1) << "\n" << run->describe();
    }
    const bool was_resumed = resumed(*run);
    (was_resumed ? resumes : cold_boots)++;
    run->signal(SIGPWR);
    if (!use_point) {
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 60000)(rng)));
      run->signal(SIGKILL);
    }
    auto status = run->wait(30s);
    ASSERT_TRUE(status) << run->describe();
    if (any_line_matches(run->stderr_lines(), kCommitted)) committed++;
    vm.transcript.add_run(*run, was_resumed);
    std::string problem = vm.transcript.check();
    ASSERT_EQ(problem, "") << "trial " << trial << " point '" << point << "'\n" << run->describe();
  }
  std::printf("crash injection: %d trials, %d resumed, %d cold boots, %d checkpoints committed and reported\n", kTrials, resumes,
              cold_boots, committed);
  EXPECT_GT(resumes, 20);
  EXPECT_GT(cold_boots, 20);
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct BadImage : ::testing::Test {
  void SetUp() override {
    skip_without_kvm();
    if (IsSkipped()) return;
    auto run = vm.start();
    ASSERT_TRUE(PersistentVm::wait_ticks(*run, 2));
    run->signal(SIGPWR);
    ASSERT_EQ(run->wait(30s).value_or(-1), 0) << run->describe();
    ASSERT_TRUE(run->wait_stderr(std::regex("power-fail checkpoint gen=1 "), 1s)) << run->describe();
    image = vm.dir.file("vm.img");
  }
  RunResult run_nvhv(const std::string& config) { return run_command({nvhv_bin(), "run", config}, 20s); }
  // Enough ticks that the notice after tick 2 always finds the guest running (with ticks=3 it
  // could power off first and leave no checkpoint to damage); a cold boot then ends in 0.3 s.
  PersistentVm vm{1, "tick_ms=10 mem_mib=2 ticks=30"};
  std::string image;
};

TEST_F(BadImage, TruncatedIsRefusedAndLeftAlone) {
  std::filesystem::resize_file(image, 1 << 20);
  auto before = read_all(image);
  auto r = run_nvhv(vm.config);
  EXPECT_EQ(r.status, 2) << r.err;  // the config does not fit the backing: a config-level refusal
  EXPECT_NE(r.err.find("vm.img"), std::string::npos) << r.err;
  EXPECT_EQ(read_all(image), before);
}

TEST_F(BadImage, WrongMagicIsRefusedAndLeftAlone) {
  {
    std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
    f.write("GARBAGE!", 8);
  }
  auto before = read_all(image);
  auto r = run_nvhv(vm.config);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("magic"), std::string::npos) << r.err;
  EXPECT_EQ(read_all(image), before);
}

TEST_F(BadImage, IdentityMismatchIsRefusedSayingWhatDiffers) {
  auto cfg = testos_config("persist", 2, 64, "tick_ms=10");
  cfg["memory"]["backing"] = image;
  auto other = write_config(vm.dir, cfg, "two.json");
  auto before = read_all(image);
  auto r = run_nvhv(other);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("vcpus"), std::string::npos) << r.err;
  EXPECT_EQ(read_all(image), before);
}

TEST_F(BadImage, FlippedBitsInTheSlotAreDetectedAndNotResumed) {
  // Slot A holds generation 1 (docs/image-format.md): flip bytes inside its payload.
  auto bytes = read_all(image);
  std::string text(bytes.begin(), bytes.begin() + 4096);
  {
    std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 * 1024 + 4096 + 200);  // inside slot A's payload, past its header
    char junk[16];
    std::fill(std::begin(junk), std::end(junk), '\x5a');
    f.write(junk, sizeof junk);
  }
  auto r = run_nvhv(vm.config);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("resumed gen="), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("testos: boot"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace nvhv::test
