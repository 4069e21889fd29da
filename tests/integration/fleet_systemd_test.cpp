// nvhv under systemd (docs/systemd.md): the notification protocol against a real datagram
// socket, SIGPWR as the stop signal at every moment of a start, and the installed unit.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "tests/integration/fleet_support.hpp"

namespace nvhv::test {
namespace {

using nlohmann::json;

// Stands in for systemd: a datagram socket nvhv finds through $NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : env_value_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (path[0] == '@') addr.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) throw std::runtime_error("bind " + path + ": " + std::strerror(errno));
  }
  ~NotifySocket() { ::close(fd_); }
  std::string env() const { return "NOTIFY_SOCKET=" + env_value_; }

  // The next datagram that contains `needle`; every datagram read is kept in `seen`.
  std::optional<std::string> wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      seen.emplace_back(buf, static_cast<size_t>(n));
      if (seen.back().find(needle) != std::string::npos) return seen.back();
    }
  }
  std::vector<std::string> seen;

 private:
  int fd_ = -1;
  std::string env_value_;
};

std::unique_ptr<ChildProcess> run_notified(const FleetVm& vm, const NotifySocket& sock) {
  return std::make_unique<ChildProcess>(std::vector<std::string>{nvhv_bin(), "run", vm.config},
                                        ChildProcess::Options{{sock.env()}, false});
}

TEST(FleetSystemd, ReadyOnceTheGuestRunsStoppingWhenThePowerFailCheckpointStarts) {
  skip_without_kvm();
  TempDir dir;
  FleetVm vm(dir, "notified");
  NotifySocket sock(dir.file("notify.sock"));
  auto run = run_notified(vm, sock);
  auto ready = sock.wait_for("READY=1", 30s);
  ASSERT_TRUE(ready) << run->describe();
  EXPECT_NE(ready->find("STATUS=notified: running (booted)"), std::string::npos) << *ready;
  ASSERT_EQ(sock.seen.size(), 2u) << "a STATUS while starting, then READY";
  EXPECT_EQ(sock.seen[0], "STATUS=notified: starting");
  // Ready means the guest runs: it ticks from here.
  ASSERT_TRUE(vm.wait_tick_above(1, 30s)) << run->describe();

  run->signal(SIGPWR);
  auto stopping = sock.wait_for("STOPPING=1", 20s);
  ASSERT_TRUE(stopping) << run->describe();
  EXPECT_NE(stopping->find("power-fail checkpoint in progress"), std::string::npos) << *stopping;
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  auto last = sock.wait_for("checkpointed", 5s);
  ASSERT_TRUE(last);
  EXPECT_NE(last->find("STATUS=notified: checkpointed: power-fail checkpoint gen=1 committed"), std::string::npos) << *last;

  // The resumed run says so; an abstract socket name works as well.
  NotifySocket abstract("@nvhv-test-notify-" + std::to_string(::getpid()));
  const long before = vm.last_tick();
  run = run_notified(vm, abstract);
  ready = abstract.wait_for("READY=1", 30s);
  ASSERT_TRUE(ready) << run->describe();
  EXPECT_NE(ready->find("running (resumed gen=1)"), std::string::npos) << *ready;
  ASSERT_TRUE(vm.wait_tick_above(before, 30s)) << run->describe();
  run->signal(SIGTERM);
  ASSERT_EQ(run->wait(20s).value_or(-1), 0) << run->describe();
  EXPECT_EQ(vm.check_serial(), "");
}

// systemd's stop signal may come at any moment of a start. Once a resume has consumed the
// checkpoint, dying of SIGPWR's default action would lose the guest (nvhv before this held only
// from its event loop on: a second `testos: boot`). nvhv holds SIGPWR pending from its start until
// the guest runs, then takes a new checkpoint, and holds it again on its way out.
TEST(FleetSystemd, PowerFailNoticesThroughoutAResumeStillEndInACheckpoint) {
  skip_without_kvm();
  TempDir dir;
  FleetVm vm(dir, "early-pwr");
  {
    ChildProcess first({nvhv_bin(), "run", vm.config});
    ASSERT_TRUE(vm.wait_tick_above(1, 30s)) << first.describe();
    first.signal(SIGPWR);
    ASSERT_EQ(first.wait(30s).value_or(-1), 0) << first.describe();
  }
  for (int generation = 2; generation <= 4; ++generation) {
    ChildProcess run({nvhv_bin(), "run", vm.config});
    // From before the checkpoint is consumed until nvhv exits: a notice every 2 ms.
    ASSERT_TRUE(run.wait_stderr(std::regex(": resumable: checkpoint generation"), 30s)) << run.describe();
    std::optional<int> status;
    while (!(status = run.wait(2ms))) run.signal(SIGPWR);
    ASSERT_EQ(*status, 0) << run.describe();
    EXPECT_TRUE(run.wait_stderr(std::regex("power-fail checkpoint gen=" + std::to_string(generation) + " "), 1s)) << run.describe();
  }
  ChildProcess last({nvhv_bin(), "run", vm.config});
  ASSERT_TRUE(last.wait_stderr(std::regex("resumed gen=4"), 30s)) << last.describe();
  ASSERT_TRUE(vm.wait_tick_above(vm.last_tick(), 30s)) << last.describe();
  last.signal(SIGTERM);
  ASSERT_EQ(last.wait(20s).value_or(-1), 0);
  EXPECT_EQ(vm.check_serial(), "");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(FleetSystemd, InstallPutsBinariesUnitAndDocsInPlace) {
  TempDir dir;
  // Staged under DESTDIR, so that install rules with absolute destinations (libvirt's hook
  // directory) never touch this machine; the prefix then points at the staged tree, as if
  // installed there.
  const std::string prefix = dir.file("prefix");
  auto install = run_command({"env", "DESTDIR=" + dir.file("stage"), "cmake", "--install", build_dir(), "--prefix", prefix}, 120s);
  ASSERT_EQ(install.status, 0) << install.out << install.err;
  std::filesystem::create_symlink(dir.file("stage") + prefix, prefix);
  for (const char* bin : {"/bin/nvhv", "/bin/nvhvctl"})
    EXPECT_EQ(::access((prefix + bin).c_str(), X_OK), 0) << prefix + bin;
  for (const char* doc : {"/share/doc/nvhv/fleet.md", "/share/doc/nvhv/systemd.md", "/share/doc/nvhv/README.md"})
    EXPECT_EQ(::access((prefix + doc).c_str(), R_OK), 0) << prefix + doc;
  const std::string unit_path = prefix + "/lib/systemd/system/nvhv@.service";
  const std::string unit = read_text(unit_path);
  ASSERT_FALSE(unit.empty()) << unit_path;
  for (const std::string& line :
       {"ExecStart=" + prefix + "/bin/nvhv run --register /etc/nvhv/%i.json", std::string("Type=notify"),
        std::string("KillSignal=SIGPWR"), std::string("KillMode=mixed"), std::string("TimeoutStopSec=120"),
        "Documentation=file:" + prefix + "/share/doc/nvhv/systemd.md"})
    EXPECT_NE(unit.find("\n" + line + "\n"), std::string::npos) << line << " not in\n" << unit;
  auto version = run_command({prefix + "/bin/nvhvctl", "fleet", "--help"}, 20s);
  EXPECT_EQ(version.status, 0) << version.err;

  // systemd's own check of the unit, as an instance of the template. PID 1 need not be systemd.
  if (::access("/usr/bin/systemd-analyze", X_OK) != 0) GTEST_SKIP() << "systemd-analyze is not installed";
  const std::string units = dir.file("units");
  std::filesystem::create_directories(units);
  std::filesystem::copy_file(unit_path, units + "/nvhv@.service");
  std::filesystem::create_symlink(units + "/nvhv@.service", units + "/nvhv@vm0.service");
  auto verify = run_command({"systemd-analyze", "verify", "--man=no", units + "/nvhv@vm0.service"}, 60s);
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
  EXPECT_EQ(verify.err.find("nvhv@"), std::string::npos) << "systemd-analyze complains about the unit:\n" << verify.err;
}

}  // namespace
}  // namespace nvhv::test
