"""Helpers for the libvirt hook tests: a private libvirtd, testos VMs, the installed hook.

The libvirtd is Debian's, started by the test in its own mount namespace: temporary directories
are bind-mounted over /etc/libvirt (its configuration and hook directories), /run/libvirt,
/var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, so the machine's libvirt setup is
never read or changed. Debian's qemu driver refuses to start unless the user `libvirt-qemu`
exists (its compiled-in default, checked before qemu.conf is read); a copy of /etc/passwd and
/etc/group with that user is bind-mounted in the namespace instead of adding it to the machine.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

SKIP = 77
# The mountpoints of the private directories.
LIBVIRT_DIRS = ["/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"]
TICK = re.compile(r"^testos: tick (\d+) (ok|CORRUPT)$")


def skip_reason():
    """Why this machine cannot run the libvirt tests, or None."""
    if os.geteuid() != 0:
        return "needs root (a private mount namespace for libvirtd)"
    for tool in ("libvirtd", "virsh", "unshare", "qemu-system-x86_64"):
        if not shutil.which(tool):
            return f"{tool} is not installed (tools/setup-deps test installs it)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not available"
    return None


def wait_for(what, predicate, timeout_s, interval_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Build:
    def __init__(self, build_dir, work):
        self.dir = build_dir
        self.nvhv = os.path.join(build_dir, "bin", "nvhv")
        self.nvhvctl = os.path.join(build_dir, "bin", "nvhvctl")
        self.testos = os.path.join(build_dir, "guest-images", "testos.elf")
        self.hook_root = os.path.join(work, "installed")
        self._install_hook()

    def _install_hook(self):
        """The hook as `cmake --install` lays it out: ROOT/etc/libvirt/hooks/{daemon.d,qemu.d}/nvhv."""
        env = dict(os.environ, DESTDIR=self.hook_root)
        subprocess.run(["cmake", "--install", self.dir, "--component", "libvirt-hook"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        self.hooks_dir = os.path.join(self.hook_root, "etc", "libvirt", "hooks")
        for driver in ("daemon", "qemu"):
            assert os.access(os.path.join(self.hooks_dir, f"{driver}.d", "nvhv"), os.X_OK), \
                f"cmake --install did not install hooks/{driver}.d/nvhv"

    def run(self, *args, timeout=120, check=None):
        r = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert r.returncode == check, f"{' '.join(args)}: exit {r.returncode}, wanted {check}\n{r.stdout}{r.stderr}"
        return r


def write_hook_config(path, build, state_dir, **extra):
    settings = {"state_dir": state_dir, "nvhv": build.nvhv, "nvhvctl": build.nvhvctl, **extra}
    with open(path, "w") as f:
        f.write("# written by the libvirt hook test\n")
        for key, value in settings.items():
            f.write(f"{key} = {value}\n")


class TestosVm:
    """A testos guest.json with a persistent backing, serial output in a file and an API socket."""

    def __init__(self, build, work, name, mem_mib=64):
        self.build = build
        self.name = name
        self.config = os.path.join(work, f"{name}.json")
        self.backing = os.path.join(work, f"{name}.img")
        self.serial = os.path.join(work, f"{name}.serial")
        self.socket = os.path.join(work, f"{name}.sock")
        doc = {"name": name, "vcpus": 1, "memory": {"size_mib": mem_mib, "backing": self.backing},
               "kernel": build.testos, "cmdline": "tick_ms=20 mem_mib=8",
               "serial": {"output": self.serial}, "api": {"socket": self.socket}}
        with open(self.config, "w") as f:
            json.dump(doc, f, indent=2)
        self.process = None

    def start(self, *extra_args):
        log = open(self.serial + ".nvhv-log", "a")
        self.process = subprocess.Popen([self.build.nvhv, "run", *extra_args, self.config], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def power_fail(self):
        self.process.send_signal(signal.SIGPWR)
        assert self.process.wait(60) == 0, f"{self.name}: nvhv exited {self.process.returncode}\n{self.nvhv_log()}"
        self.process = None

    def nvhv_log(self):
        try:
            with open(self.serial + ".nvhv-log") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def serial_lines(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def ticks(self):
        return [int(m.group(1)) for m in map(TICK.match, self.serial_lines()) if m]

    def last_tick(self):
        t = self.ticks()
        return t[-1] if t else 0

    def wait_tick(self, tick, timeout_s=60):
        wait_for(f"{self.name} to print tick {tick}", lambda: self.last_tick() >= tick, timeout_s)

    def check_serial(self):
        """One boot, ticks 1, 2, 3, ... without a gap, repeat or CORRUPT: the guest never rebooted
        and lost nothing, however many times it was checkpointed and resumed."""
        lines = self.serial_lines()
        boots = lines.count("testos: boot")
        assert boots == 1, f"{self.name}: {boots} boots in {self.serial}"
        bad = [l for l in lines if "CORRUPT" in l or l.startswith("testos: corrupt")]
        assert not bad, f"{self.name}: {bad[:3]}"
        ticks = self.ticks()
        assert ticks, f"{self.name}: no tick in {self.serial}"
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), f"{self.name}: ticks not consecutive: {ticks}"

class PrivateLibvirtd:
    """Debian's libvirtd with its own configuration and hook directory (see the module comment)."""

    QEMU_CONF = """\
# No cgroups, namespaces, security labels or privilege drop: the test runs as root in a container.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# QEMU's output goes to a file directly: no virtlogd to start.
stdio_handler = "file"
"""

    def __init__(self, root, hooks_dir, qemu_cache):
        """qemu_cache: kept between tests, so the qemu driver probes QEMU's capabilities (about
        10 s here) once, not at every first start; libvirt revalidates it against the binary."""
        self.root = root
        self.qemu_cache = qemu_cache
        self.etc = os.path.join(root, "etc")
        self.sock_dir = os.path.join(root, "sock")
        self.uri = f"qemu+unix:///system?socket={self.sock_dir}/libvirt-sock"
        self.log = os.path.join(root, "libvirtd.log")
        self.process = None
        self.created_mountpoints = []
        for d in ("run", "lib", "log", "sock"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        os.makedirs(qemu_cache, exist_ok=True)
        shutil.copytree(hooks_dir, os.path.join(self.etc, "hooks"), symlinks=True)
        with open(os.path.join(self.etc, "libvirtd.conf"), "w") as f:
            f.write(f'unix_sock_dir = "{self.sock_dir}"\nunix_sock_rw_perms = "0700"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    f'log_level = 3\nlog_filters = "1:util.hook"\nlog_outputs = "1:file:{self.log}"\n')
        with open(os.path.join(self.etc, "qemu.conf"), "w") as f:
            f.write(self.QEMU_CONF)
        for name, line in (("passwd", "libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin"),
                           ("group", "libvirt-qemu:x:64055:")):
            with open(f"/etc/{name}") as src, open(os.path.join(root, name), "w") as dst:
                text = src.read()
                dst.write(text if re.search(r"^libvirt-qemu:", text, re.M) else text.rstrip("\n") + "\n" + line + "\n")

    def hooks(self):
        return os.path.join(self.etc, "hooks")

    def _mount_script(self):
        binds = [(self.etc, "/etc/libvirt"), (os.path.join(self.root, "passwd"), "/etc/passwd"),
                 (os.path.join(self.root, "group"), "/etc/group"), (os.path.join(self.root, "run"), "/run/libvirt"),
                 (os.path.join(self.root, "lib"), "/var/lib/libvirt"),
                 (os.path.join(self.root, "log"), "/var/log/libvirt"), (self.qemu_cache, "/var/cache/libvirt")]
        lines = ["set -e"] + [f"mount --bind '{src}' '{dst}'" for src, dst in binds]
        lines.append("exec libvirtd -f /etc/libvirt/libvirtd.conf")
        return "\n".join(lines)

    def start(self, timeout_s=60):
        # The bind mounts need mountpoints; Debian's libvirt-daemon-system would create these
        # empty directories. Ours are removed again by cleanup().
        for d in LIBVIRT_DIRS:
            if not os.path.isdir(d):
                os.makedirs(d)
                self.created_mountpoints.append(d)
        out = open(os.path.join(self.root, "libvirtd.out"), "a")
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                         self._mount_script()], stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT)
        out.close()
        started = time.monotonic()

        def answers():
            if self.process.poll() is not None:
                raise AssertionError(f"libvirtd exited with {self.process.returncode}:\n{self.output()}")
            return self.virsh("version", check=None).returncode == 0

        wait_for("libvirtd to answer virsh", answers, timeout_s, 0.2)
        return time.monotonic() - started

    def stop(self, timeout_s=60):
        """SIGTERM, as systemd stops it; libvirtd runs the daemon shutdown hook before it exits."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout_s)
        self.process = None
        return status, time.monotonic() - started

    def virsh(self, *args, check=0, stdin=None):
        r = subprocess.run(["virsh", "-c", self.uri, *args], input=stdin, capture_output=True, text=True, timeout=120)
        if check is not None:
            assert r.returncode == check, f"virsh {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        return r

    def define(self, xml):
        path = os.path.join(self.root, "domain.xml")
        with open(path, "w") as f:
            f.write(xml)
        self.virsh("define", path)

    def output(self):
        text = ""
        for name in ("libvirtd.out", "libvirtd.log"):
            try:
                with open(os.path.join(self.root, name), errors="replace") as f:
                    text += f"--- {name}\n" + "".join(f.readlines()[-40:])
            except FileNotFoundError:
                pass
        return text

    def cleanup(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        for d in reversed(self.created_mountpoints):
            try:
                os.rmdir(d)
            except OSError:
                pass


def domain_xml(name, metadata=""):
    """A tiny TCG domain with no OS and no devices to speak of: it starts in about a second and
    sits in the BIOS; the hooks are what the test is about."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <metadata>{metadata}</metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def nvhv_metadata(config, swap_file=None, park=None, namespace="urn:x-nvhv:libvirt:1"):
    attrs = f' config="{config}"'
    if swap_file:
        attrs += f' swap-file="{swap_file}"'
    if park:
        attrs += f' park-on-release="{park}"'
    return f'<nvhv:vm xmlns:nvhv="{namespace}"{attrs}/>'


def fingerprint(path):
    """(size, SHA-256) of a file, or None when it does not exist: to show nothing changed it."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return os.path.getsize(path), digest.hexdigest()
    except FileNotFoundError:
        return None


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def make_work_dir():
    return tempfile.mkdtemp(prefix="nvhv-libvirt-")
