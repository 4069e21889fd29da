#!/usr/bin/env python3
"""nvhv's libvirt hook (tools/libvirt-hook, docs/libvirt.md) as `cmake --install` lays it out.

  HookCommandLine  the hook run directly as libvirt runs it (its arguments, the domain XML on
                   stdin, a scrubbed environment): metadata and settings errors, pass-through
  DaemonHooks      a real, private libvirtd: its shutdown power-fails two registered testos VMs,
                   its start resumes them; their ticks continue across libvirtd restarts
  DomainHooks      marked and unmarked TCG domains started and destroyed through virsh: prepare
                   swaps the nvhv image in, release parks it; unmarked domains are left alone

Usage: libvirt_hook_test.py BUILD_DIR CLASS   (exit 77: skipped, e.g. no libvirtd or no KVM)
"""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from libvirt_support import (SKIP, Build, PrivateLibvirtd, TestosVm, domain_xml, fingerprint,  # noqa: E402
                             make_work_dir, nvhv_metadata, read, skip_reason, write_hook_config)

BUILD_DIR = None
# What libvirt leaves of the environment when it runs a hook.
LIBVIRT_ENV = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


class WorkDir(unittest.TestCase):
    def setUp(self):
        self.work = make_work_dir()
        self.build = Build(BUILD_DIR, self.work)
        self.state_dir = os.path.join(self.work, "state")
        os.makedirs(self.state_dir)
        self.hook_log = os.path.join(self.state_dir, "libvirt-hook.log")

    def tearDown(self):
        if os.environ.get("NVHV_TEST_KEEP_WORK"):
            print(f"work directory kept: {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


class HookCommandLine(WorkDir):
    def setUp(self):
        super().setUp()
        self.hooks = os.path.join(self.work, "hooks")
        shutil.copytree(self.build.hooks_dir, self.hooks, symlinks=True)
        self.conf = os.path.join(self.hooks, "nvhv.conf")
        write_hook_config(self.conf, self.build, self.state_dir)
        self.guest = TestosVm(self.build, self.work, "cli")

    def hook(self, driver, *args, xml="", env=None):
        return subprocess.run([os.path.join(self.hooks, f"{driver}.d", "nvhv"), *args], input=xml,
                              capture_output=True, text=True, env=env or LIBVIRT_ENV, timeout=60)

    def marked(self, **kw):
        return domain_xml("marked", nvhv_metadata(self.guest.config, **kw))

    def test_unmarked_domains_pass_untouched_whatever_the_operation(self):
        with open(self.conf, "w") as f:
            f.write("not a setting\n")  # even broken settings never reach an unmarked domain
        foreign = nvhv_metadata(self.guest.config, os.path.join(self.work, "x.swap"), "yes",
                                namespace="urn:example:not-nvhv")
        for xml in (domain_xml("plain"), domain_xml("foreign", foreign), "<domain><unclosed>"):
            for op, sub in (("prepare", "begin"), ("start", "begin"), ("started", "begin"), ("stopped", "end"),
                            ("release", "end"), ("migrate", "begin"), ("restore", "begin"), ("reconnect", "begin")):
                r = self.hook("qemu", "plain", op, sub, "-", xml=xml)
                self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""), f"{op} {sub} of {xml[:40]}")
        self.assertFalse(os.path.exists(self.hook_log), "the hook logged (wrote) something for a domain not nvhv's")

    def test_bad_metadata_fails_naming_what_is_wrong(self):
        ns = 'xmlns:nvhv="urn:x-nvhv:libvirt:1"'
        cfg = self.guest.config
        cases = [
            (f'<nvhv:vm {ns} config="{cfg}" swapfile="/x"/>', "unknown attribute 'swapfile'"),
            (f'<nvhv:vm {ns}/>', "config attribute"),
            (f'<nvhv:vm {ns} config="rel/guest.json"/>', "must be an absolute path"),
            (f'<nvhv:vm {ns} config="{cfg}" swap-file="x.swap"/>', "swap-file='x.swap'"),
            (f'<nvhv:vm {ns} config="{cfg}" swap-file="/x" park-on-release="maybe"/>', "must be yes or no"),
            (f'<nvhv:vm {ns} config="{cfg}" park-on-release="yes"/>', "needs a swap-file"),
            (f'<nvhv:vm {ns} config="{cfg}"/><nvhv:vm {ns} config="{cfg}"/>', "exactly one <vm>"),
            (f'<nvhv:disk {ns}/>', "found: disk"),
            (f'<nvhv:vm {ns} config="{cfg}"><x/></nvhv:vm>', "unexpected child element"),
        ]
        for metadata, expect in cases:
            r = self.hook("qemu", "bad", "prepare", "begin", "-", xml=domain_xml("bad", metadata))
            self.assertEqual(r.returncode, 2, metadata + "\n" + r.stderr)
            self.assertIn(expect, r.stderr, metadata)
            self.assertEqual(r.stdout, "")
            self.assertIn(expect, read(self.hook_log), "the error is not in the hook's log file")
        r = self.hook("qemu", "bad", "prepare", "begin", "-", xml='<domain><metadata xmlns:n="urn:x-nvhv:libvirt:1">')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("not well-formed", r.stderr)

    def test_marked_domains_log_what_they_do(self):
        swap = os.path.join(self.work, "cli.swap")
        r = self.hook("qemu", "marked", "started", "begin", "-", xml=self.marked(swap_file=swap))
        self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
        self.assertIn("started begin: nothing to do", read(self.hook_log))
        r = self.hook("qemu", "marked", "prepare", "begin", "-", xml=self.marked(swap_file=swap))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"swap file {swap} does not exist: nothing to swap in", r.stderr)
        r = self.hook("qemu", "marked", "prepare", "begin", "-", xml=self.marked())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no swap-file in the metadata", read(self.hook_log))
        r = self.hook("qemu", "marked", "release", "end", "-", xml=self.marked(swap_file=swap, park="no"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("park-on-release is not yes", read(self.hook_log))
        # The swap file exists but the VM's config does not: the start must not go ahead.
        open(swap, "w").close()
        os.remove(self.guest.config)
        r = self.hook("qemu", "marked", "prepare", "begin", "-", xml=self.marked(swap_file=swap))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"the VM's config {self.guest.config} (metadata config=) does not exist", r.stderr)
        self.assertEqual(os.path.getsize(swap), 0)

    def test_bad_settings_fail_marked_domains_and_daemon_hooks(self):
        cases = [("colour = blue\n", "nvhv.conf:1: unknown key 'colour'"),
                 ("\n# fine\npower_fail_deadline_ms = soon\n", "nvhv.conf:3: power_fail_deadline_ms must be a positive"),
                 ("state_dir\n", "nvhv.conf:1: expected `key = value`")]
        for text, expect in cases:
            with open(self.conf, "w") as f:
                f.write(text)
            for driver, args, xml in (("qemu", ("m", "prepare", "begin", "-"), self.marked()),
                                      ("daemon", ("-", "shutdown", "-", "shutdown"), "")):
                r = self.hook(driver, *args, xml=xml)
                self.assertEqual(r.returncode, 2, f"{text!r} {driver}\n{r.stderr}")
                self.assertIn(expect, r.stderr)

    def test_daemon_operations(self):
        r = self.hook("daemon", "-", "reload", "begin", "SIGHUP")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("daemon reload: nothing to do", read(self.hook_log))
        write_hook_config(self.conf, self.build, self.state_dir, nvhvctl="/nonexistent/nvhvctl")
        r = self.hook("daemon", "-", "shutdown", "-", "shutdown")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("nvhvctl = /nonexistent/nvhvctl: no such executable", r.stderr)
        write_hook_config(self.conf, self.build, os.path.join(self.work, "absent"))
        r = self.hook("daemon", "-", "start", "-", "start")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("does not exist: no registered VMs", r.stderr)
        # By hand, with the settings named in the environment and the driver as an argument.
        env = dict(LIBVIRT_ENV, NVHV_LIBVIRT_HOOK_CONFIG=os.path.join(self.work, "elsewhere.conf"))
        write_hook_config(env["NVHV_LIBVIRT_HOOK_CONFIG"], self.build, self.state_dir)
        script = os.path.join(self.work, "nvhv-libvirt-hook")
        shutil.copy(os.path.join(self.hooks, "daemon.d", "nvhv"), script)
        r = subprocess.run([script, "daemon", "-", "reload", "begin", "SIGHUP"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("settings from " + env["NVHV_LIBVIRT_HOOK_CONFIG"], r.stderr)
        r = subprocess.run([script, "start"], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage:", r.stderr)


class LibvirtTest(WorkDir):
    def setUp(self):
        super().setUp()
        self.libvirtd = PrivateLibvirtd(os.path.join(self.work, "libvirt"), self.build.hooks_dir,
                                        os.path.join(BUILD_DIR, "tests", "libvirt-cache"))
        write_hook_config(os.path.join(self.libvirtd.hooks(), "nvhv.conf"), self.build, self.state_dir,
                          power_fail_deadline_ms=10000, resume_timeout_s=60, swap_timeout_s=60)
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            if vm.process is not None and vm.process.poll() is None:
                vm.process.kill()
                vm.process.wait()
        self.libvirtd.cleanup()
        self.kill_registered()
        super().tearDown()

    def kill_registered(self):
        """Last resort for VMs the hook started: they are not our children."""
        r = self.build.run(self.build.nvhvctl, "fleet", "power-fail", "--state-dir", self.state_dir)
        if r.returncode != 0:
            print(f"cleanup: fleet power-fail: {r.stdout}{r.stderr}", file=sys.stderr)

    def context(self):
        return f"\n--- hook log\n{read(self.hook_log)}\n{self.libvirtd.output()}"

    def expect_daemon_hooks(self, starts, shutdowns):
        """Every daemon hook run so far finished its work (libvirtd only logs a failed one)."""
        log = read(self.hook_log)
        self.assertEqual(log.count("resume of the registered VMs: done"), starts, self.context())
        self.assertEqual(log.count("power-fail of the registered VMs: done"), shutdowns, self.context())
        self.assertNotIn("error", log, self.context())


class DaemonHooks(LibvirtTest):
    def fleet(self):
        r = self.build.run(self.build.nvhvctl, "fleet", "list", "--json", "--state-dir", self.state_dir, check=0)
        doc = json.loads(r.stdout)
        entries = doc if isinstance(doc, list) else doc.get("vms", [])
        return {e["name"]: e for e in entries}

    def test_libvirtd_stop_power_fails_and_start_resumes_registered_vms(self):
        self.vms = [TestosVm(self.build, self.work, name) for name in ("vm-a", "vm-b")]
        for vm in self.vms:
            vm.start("--register", "--state-dir", self.state_dir)
        for vm in self.vms:
            vm.wait_tick(3)
        took = self.libvirtd.start()
        print(f"libvirtd answered {took:.1f} s after it was started")
        self.assertIn("Name", self.libvirtd.virsh("list", "--all").stdout)
        self.expect_daemon_hooks(1, 0)
        self.assertIn("vm-a: already_running", read(self.hook_log))

        for cycle in (1, 2):
            before = {vm.name: vm.last_tick() for vm in self.vms}
            status, took = self.libvirtd.stop()
            print(f"cycle {cycle}: libvirtd stop (with the power-fail hook) took {took:.2f} s")
            self.assertEqual(status, 0, self.context())
            self.expect_daemon_hooks(cycle, cycle)
            self.assertIn("vm-b: committed in", read(self.hook_log))
            for vm in self.vms:
                if vm.process is not None:  # the first cycle's VMs are our children: they must exit 0
                    self.assertEqual(vm.process.wait(30), 0, vm.nvhv_log())
                    vm.process = None
            entries = self.fleet()
            for vm in self.vms:
                self.assertEqual(entries[vm.name]["status"], "checkpointed", f"{vm.name}: {entries[vm.name]}")
            stopped = {vm.name: vm.last_tick() for vm in self.vms}
            time.sleep(0.3)
            self.assertEqual(stopped, {vm.name: vm.last_tick() for vm in self.vms}, "a VM ran on after power-fail")
            for vm in self.vms:
                self.assertGreaterEqual(stopped[vm.name], before[vm.name])

            took = self.libvirtd.start()
            print(f"cycle {cycle}: libvirtd answered {took:.1f} s after start (with the resume hook)")
            self.expect_daemon_hooks(cycle + 1, cycle)
            self.assertEqual(read(self.hook_log).count("vm-a: resumed gen"), cycle)
            for vm in self.vms:
                vm.wait_tick(stopped[vm.name] + 3)
                vm.check_serial()
            self.libvirtd.virsh("list", "--all")
            entries = self.fleet()
            for vm in self.vms:
                self.assertEqual(entries[vm.name]["status"], "running", f"{vm.name}: {entries[vm.name]}")
        # The resumed VMs are not our children: a last libvirtd stop checkpoints them again.
        status, _ = self.libvirtd.stop()
        self.assertEqual(status, 0, self.context())
        self.expect_daemon_hooks(3, 3)
        entries = self.fleet()
        for vm in self.vms:
            self.assertEqual(entries[vm.name]["status"], "checkpointed", f"{vm.name}: {entries[vm.name]}")
            vm.check_serial()


class DomainHooks(LibvirtTest):
    def test_prepare_swaps_in_release_parks_and_unmarked_domains_are_left_alone(self):
        vm = TestosVm(self.build, self.work, "parked")
        self.vms = [vm]
        swap = os.path.join(self.work, "parked.swap")
        vm.start()
        vm.wait_tick(3)
        vm.power_fail()
        self.build.run(self.build.nvhv, "swap-out", vm.config, "--to", swap, check=0)
        self.assertEqual(os.path.getsize(vm.backing), 64 * 1024, "swap-out did not release the image")

        # A recording hook that runs before ours shows libvirt called the hooks for every domain.
        calls = os.path.join(self.work, "calls.log")
        record = os.path.join(self.libvirtd.hooks(), "qemu.d", "00-record")
        with open(record, "w") as f:
            f.write(f"#!/bin/sh\necho \"$*\" >> {calls}\ncat > /dev/null\n")
        os.chmod(record, 0o755)
        self.libvirtd.start()

        # Unmarked: no metadata, and metadata that looks like ours in another namespace.
        self.libvirtd.define(domain_xml("plain"))
        self.libvirtd.define(domain_xml("lookalike", nvhv_metadata(vm.config, swap, "yes", namespace="urn:example:x")))
        untouched = (fingerprint(vm.backing), fingerprint(swap))
        for name in ("plain", "lookalike"):
            self.libvirtd.virsh("start", name)
            self.libvirtd.virsh("destroy", name)
            self.assertIn(f"{name} prepare begin -", read(calls))
            self.assertIn(f"{name} release end -", read(calls))
        self.assertEqual((fingerprint(vm.backing), fingerprint(swap)), untouched, "an unmarked domain changed nvhv files")
        self.assertNotIn("plain", read(self.hook_log))
        self.assertNotIn("lookalike", read(self.hook_log))

        # Marked: prepare swaps the image in, nvhv resumes it, release parks it again. Twice.
        self.libvirtd.define(domain_xml("marked", nvhv_metadata(vm.config, swap, "yes")))
        for cycle in (1, 2):
            self.libvirtd.virsh("start", "marked")
            self.assertIn("running", self.libvirtd.virsh("domstate", "marked").stdout)
            self.assertGreater(os.path.getsize(vm.backing), 64 << 20, f"cycle {cycle}: not swapped in{self.context()}")
            self.assertIn(f"the image of {vm.config} holds the VM", read(self.hook_log))
            last = vm.last_tick()
            vm.start()
            vm.wait_tick(last + 3)
            vm.power_fail()
            vm.check_serial()
            self.libvirtd.virsh("destroy", "marked")
            self.assertEqual(os.path.getsize(vm.backing), 64 * 1024, f"cycle {cycle}: not parked{self.context()}")
            self.assertIn(f"parked the image of {vm.config} in {swap}", read(self.hook_log))

        # A marked domain whose swap-in is refused (a VM of another shape): the start is aborted
        # with nvhv's reason, and neither the swap file nor the other image is touched.
        other = TestosVm(self.build, self.work, "other", mem_mib=96)
        self.libvirtd.define(domain_xml("wrong", nvhv_metadata(other.config, swap)))
        before = (fingerprint(swap), fingerprint(other.backing))
        r = self.libvirtd.virsh("start", "wrong", check=1)
        self.assertIn("swap-in of", r.stderr)
        self.assertIn("the domain is not started", r.stderr)
        self.assertIn("shut off", self.libvirtd.virsh("domstate", "wrong").stdout)
        self.assertEqual((fingerprint(swap), fingerprint(other.backing)), before)

        # Bad metadata on a marked domain: the start is aborted naming the attribute.
        self.libvirtd.define(domain_xml("typo", nvhv_metadata(vm.config, swap, "maybe")))
        r = self.libvirtd.virsh("start", "typo", check=1)
        self.assertIn("park-on-release='maybe'", r.stderr)
        self.assertEqual(fingerprint(swap), before[0])

        status, _ = self.libvirtd.stop()
        self.assertEqual(status, 0, self.context())
        self.assertNotIn("internal error", read(self.hook_log), self.context())
        # And the parked VM still comes back by hand.
        self.build.run(self.build.nvhv, "swap-in", vm.config, "--from", swap, check=0)
        last = vm.last_tick()
        vm.start()
        vm.wait_tick(last + 2)
        vm.power_fail()
        vm.check_serial()


def main():
    global BUILD_DIR
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    BUILD_DIR, name = sys.argv[1], sys.argv[2]
    if name != "HookCommandLine" and (reason := skip_reason()):
        print(f"skipped: {reason}")
        return SKIP
    suite = unittest.defaultTestLoader.loadTestsFromName(name, sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
