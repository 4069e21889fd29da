#!/usr/bin/env python3
"""Runs the nested host's QEMU for tools/nested-host/run and turns what L1 prints into a status.

QEMU's argv must contain @CONSOLE@ and @OUTPUT@: the paths of two pipes this helper reads, the
L1 console (kernel messages, NESTED-* status lines) and the command's own output. It may contain
@QEMULOG@, a third pipe for QEMU's own log (`-d cpu_reset -D @QEMULOG@`). QEMU then logs every
CPU's state as it resets it, and TCG logs `Triple fault` first when an L1 CPU triple faults. A
reset after L1's console has started means L1 went down (QEMU runs without -no-reboot so that it
logs the state): QEMU is killed RESET_DUMP_GRACE later, before L1 boots again, and the report
says whether it was a triple fault and where each CPU was (RIP, as module+offset or with its
kernel symbol from --system-map). The command's output is copied to stdout as it arrives; the
console is kept for error reports (or shown with --verbose). Exit status: the command's, 124 on timeout, 125 when the harness or L1 failed,
137 after a power cut (--kill-after-line).

L1's init prints NESTED-ALIVE every few seconds from a shell loop. When those stop for HUNG_AFTER
seconds while the command runs, L1's kernel no longer schedules its own processes: the nested test
host hung, whatever the command was doing. QEMU is then killed at once (no waiting out the
timeout) and stderr gets a NESTED-HUNG line, so callers can tell a hung test host from a command
that is merely slow or stuck (its heartbeat goes on). The status is 124, as for a timeout.
When L1 goes down before the command finished (its CPUs reset, or QEMU ends), stderr gets
NESTED-DOWN and the status is 125.
"""
import argparse
import collections
import ctypes
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

TIMEOUT, HARNESS_FAILURE, POWER_CUT = 124, 125, 137
POWER_OFF_GRACE = 30  # seconds L1 may take from the command's end to QEMU's exit
# L1's heartbeat comes every 5 s; a loaded L1 has been seen to stall for 20-odd s (soft lockup
# reports) and then go on, so only a much longer silence counts as hung.
HUNG_AFTER = float(os.environ.get("NVHV_NESTED_HUNG_AFTER", 120))
RESET_DUMP_GRACE = 0.5  # seconds QEMU gets to log every CPU's registers after L1 went down


class Interrupted(Exception):
    pass


def log(msg):
    sys.stderr.write(f"nested-host: {msg}\n")
    sys.stderr.flush()


def die_with_parent():
    # QEMU must not outlive this helper, even when it is SIGKILLed (ctest timeouts).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--kill-after-line")
    ap.add_argument("--kill-delay-ms", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--power-switch", action="store_true",
                    help="QEMU exiting with status 137 (isa-debug-exit, value 0x44) is a power cut from L1")
    ap.add_argument("--cleanup", help="directory to delete at the end")
    ap.add_argument("--system-map", help="L1 kernel's System.map, to name the RIPs of a reset")
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.qemu and a.qemu[0] == "--":
        a.qemu = a.qemu[1:]
    try:
        return run(a)
    finally:
        if a.cleanup:
            shutil.rmtree(a.cleanup, ignore_errors=True)


def run(a):
    kill_re = re.compile(a.kill_after_line) if a.kill_after_line else None
    con_r, con_w = os.pipe()
    out_r, out_w = os.pipe()
    log_r, log_w = os.pipe()
    argv = [x.replace("@CONSOLE@", f"/dev/fd/{con_w}").replace("@OUTPUT@", f"/dev/fd/{out_w}")
            .replace("@QEMULOG@", f"/dev/fd/{log_w}") for x in a.qemu]
    start = time.monotonic()

    def on_signal(signum, _frame):
        raise Interrupted(signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(con_w, out_w, log_w),
                            preexec_fn=die_with_parent)
    os.close(con_w)
    os.close(out_w)
    os.close(log_w)
    console_tail = collections.deque(maxlen=80)
    qemu_log = {"lines": 0, "triple_faults": 0}
    dump_done = False   # reset_dump holds the first reset's register dumps, all of them
    reset_dump = []     # QEMU's log from the first CPU reset after L1's console started
    reset_kill_at = None
    modules = {}        # L1's modules and their bases, from init's NESTED-MODULES line
    marks = {}          # NESTED-INIT / NESTED-START / NESTED-EXIT -> seconds since start
    exit_status = None
    failure = None
    kill_at = None
    killed_for = None   # "power-cut", "timeout", "hung" or "hung power-off"
    last_alive = None   # seconds since start of L1's last heartbeat
    bufs = {con_r: b"", out_r: b"", log_r: b""}
    open_fds = [con_r, out_r, log_r]
    stdout_open = True
    try:
        while open_fds:
            now = time.monotonic()
            if killed_for is None and qemu.poll() is None:
                if reset_kill_at is not None and now >= reset_kill_at:
                    qemu.kill()     # before L1 boots again and reruns the command
                    killed_for = "reset"
                elif kill_at is not None and now >= kill_at:
                    qemu.kill()
                    killed_for = "power-cut"
                elif now - start >= a.timeout:
                    qemu.kill()
                    killed_for = "timeout"
                elif last_alive is not None and "EXIT" not in marks and now - start - last_alive >= HUNG_AFTER:
                    qemu.kill()
                    killed_for = "hung"
                elif "EXIT" in marks and now - start >= marks["EXIT"] + POWER_OFF_GRACE:
                    qemu.kill()         # the command is done; L1 hangs on its way down
                    killed_for = "hung power-off"
            deadlines = [start + a.timeout] + ([kill_at] if kill_at else [])
            if reset_kill_at is not None:
                deadlines.append(reset_kill_at)
            if "EXIT" in marks:
                deadlines.append(start + marks["EXIT"] + POWER_OFF_GRACE)
            elif last_alive is not None:
                deadlines.append(start + last_alive + HUNG_AFTER)
            wait = max(0.0, min(deadlines) - now) if killed_for is None else 1.0
            ready, _, _ = select.select(open_fds, [], [], wait)
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:                      # EOF: QEMU is gone
                    open_fds.remove(fd)
                    lines, bufs[fd] = [bufs[fd]] if bufs[fd] else [], b""
                else:
                    if fd == out_r and stdout_open:
                        try:
                            sys.stdout.buffer.write(data)
                            sys.stdout.buffer.flush()
                        except BrokenPipeError:   # e.g. `run ... | grep -q`: let L1 finish
                            stdout_open = False
                    *lines, bufs[fd] = (bufs[fd] + data).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if fd == log_r:
                        qemu_log["lines"] += 1
                        if not console_tail:
                            continue    # QEMU's own resets of the CPUs at start-up
                        if reset_kill_at is None:
                            # L1 is up: a triple fault logged before its CPUs' first reset is
                            # why they were reset. (After a reset request Linux may go on to
                            # try other ways, a triple fault among them: those come later.)
                            qemu_log["triple_faults"] += line.startswith("Triple fault")
                            if line.startswith("CPU Reset"):
                                reset_dump.append(line)
                                # L1 went down. QEMU is still writing the register dumps; L1
                                # takes seconds to boot again, so there is time to read them.
                                reset_kill_at = time.monotonic() + RESET_DUMP_GRACE
                        elif not dump_done:
                            # The first reset's dumps end where another reset or fault begins.
                            if line.startswith("Triple fault") or line == reset_dump[0]:
                                dump_done = True
                            else:
                                reset_dump.append(line)
                        continue
                    if fd == out_r:
                        if kill_re and kill_at is None and kill_re.search(line):
                            kill_at = time.monotonic() + a.kill_delay_ms / 1000
                        continue
                    t = time.monotonic() - start
                    if line.endswith("NESTED-ALIVE"):   # kernel messages may cut into its line
                        last_alive = t
                        continue
                    if a.cleanup and not console_tail:
                        # QEMU read the kernel and initrd when it started: drop them now, so even
                        # a SIGKILLed harness leaves nothing behind.
                        shutil.rmtree(a.cleanup, ignore_errors=True)
                    console_tail.append(line)
                    if a.verbose:
                        log(f"L1 {t:6.1f}| {line}")
                    if line.startswith("NESTED-MODULES "):
                        for entry in line.split()[1:]:
                            name, _, base = entry.partition("@")
                            try:
                                modules[name] = int(base, 16)
                            except ValueError:
                                pass
                    m = re.search(r"NESTED-(INIT|START|EXIT (\d+)|FAIL (.*))", line)
                    what = m and m.group(1).split()[0]
                    if what and what not in marks:
                        marks[what] = t
                        if what == "EXIT":
                            exit_status = int(m.group(2))
                        elif what == "FAIL":
                            failure = m.group(3)
        qemu_status = qemu.wait()
    except Interrupted as e:
        qemu.kill()
        qemu.wait()
        log(f"interrupted by signal {e.args[0]}; QEMU killed")
        return 128 + e.args[0]
    except BaseException:
        qemu.kill()
        qemu.wait()
        raise

    total = time.monotonic() - start
    if a.verbose:
        log("timings: " + ", ".join(f"{k.lower()} at {v:.1f} s" for k, v in marks.items())
            + f", QEMU gone at {total:.1f} s")

    def show_console():
        log("last lines of the L1 console:" + ("" if console_tail else " (none)"))
        for line in console_tail:
            sys.stderr.write(f"  L1| {line}\n")

    if killed_for == "power-cut":
        log(f"QEMU killed {a.kill_delay_ms} ms after a line matched '{a.kill_after_line}'")
        sys.stderr.write("NESTED-POWER-CUT\n")
        return POWER_CUT
    if a.power_switch and killed_for is None and exit_status is None and qemu_status == POWER_CUT:
        log("L1 cut its own power (tools/nested-host/power-switch)")
        sys.stderr.write("NESTED-POWER-CUT\n")
        return POWER_CUT
    if killed_for == "hung power-off":
        log(f"L1 did not power off within {POWER_OFF_GRACE} s of the command's end; QEMU killed")
    if killed_for == "hung":
        log(f"L1 hung: no heartbeat from its processes for {HUNG_AFTER:g} s (the last at {last_alive:.1f} s); "
            f"QEMU killed at {total:.1f} s")
        show_console()
        sys.stderr.write("NESTED-HUNG\n")
        return TIMEOUT
    if killed_for == "timeout":
        log(f"timeout: L1 still running after {a.timeout:g} s; QEMU killed")
        show_console()
        return TIMEOUT
    if kill_at is not None:
        log("the command finished before the power cut was due; no power cut happened")
    if failure is not None:
        log(f"L1 failed: {failure}")
        show_console()
        return HARNESS_FAILURE
    if exit_status is None:
        if killed_for == "reset":   # L1 rebooted, panicked or triple faulted
            log("an L1 CPU was reset before the command finished; QEMU killed before L1 could boot again")
        else:                       # L1 powered itself off early, or QEMU itself failed
            log(f"QEMU exited with status {qemu_status} before the command finished")
        show_console()
        show_reset(qemu_log, reset_dump, a.system_map, modules)
        sys.stderr.write("NESTED-DOWN\n")
        return HARNESS_FAILURE
    return exit_status


def kernel_symbol(system_map, address):
    """'name+0xoff' of the text symbol at or below address in a System.map, or ''."""
    best = None
    try:
        with open(system_map) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue
                at = int(parts[0], 16)
                if at <= address and (best is None or at > best[0]):
                    best = (at, parts[2])
    except (OSError, ValueError):
        return ""
    return f"{best[1]}+{address - best[0]:#x}" if best else ""


def module_offset(modules, address):
    """'module+0xoff' for an address in one of L1's modules (its base at or below), or ''."""
    below = [(base, name) for name, base in modules.items() if 0 < base <= address]
    if not below:
        return ""
    base, name = max(below)
    return f"{name}+{address - base:#x}" if address - base < 64 << 20 else ""


def show_reset(qemu_log, reset_dump, system_map, modules):
    if qemu_log["lines"] == 0:
        log("QEMU's reset log is empty: run without `-d cpu_reset -D @QEMULOG@`?")
        return
    if qemu_log["triple_faults"]:
        log(f"QEMU's reset log: a triple fault of an L1 CPU ({qemu_log['lines']} lines logged)")
    else:
        log(f"QEMU's reset log: no triple fault, so L1 asked for the reset or power-off itself "
            f"({qemu_log['lines']} lines logged)")
    cpu = None
    for line in reset_dump:
        m = re.match(r"CPU Reset \(CPU (\d+)\)", line)
        if m:
            cpu = m.group(1)
        m = re.search(r"RIP=([0-9a-f]+)", line)
        if m and cpu is not None:
            rip = int(m.group(1), 16)
            where = module_offset(modules, rip) or (kernel_symbol(system_map, rip) if system_map else "")
            log(f"L1 CPU {cpu} was at RIP {rip:#x}" + (f" ({where})" if where else ""))
    for line in reset_dump[:60]:
        sys.stderr.write(f"  QEMU| {line}\n")


if __name__ == "__main__":
    sys.exit(main())
