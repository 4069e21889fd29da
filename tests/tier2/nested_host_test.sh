#!/bin/sh
# Tier-2 checks of the nested test host itself (tests/tier2/nested_host.cmake).
# Usage: nested_host_test.sh smoke|nvdimm|power_cut|hung|devdax|kvm_trace SOURCE_DIR WORK_DIR
# Exit 77 (ctest: skipped) when this machine lacks what L1 needs.
set -u
what=$1 src=$2 work=$3
run=$src/tools/nested-host/run
mkdir -p "$work"

"$src/tools/mkinitramfs" --newest-kernel >/dev/null || { echo "SKIP: no Debian kernel"; exit 77; }
for c in qemu-system-x86_64 busybox cpio python3; do
  command -v "$c" >/dev/null || { echo "SKIP: $c missing (tools/setup-deps test)"; exit 77; }
done

fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/l1_verdict.sh"
# run_l1 EXPECTED_STATUS ARGS...: runs the harness, shows its output, keeps it in $out.
run_l1() {
  want=$1; shift
  out=$("$run" "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [ "$rc" -eq "$want" ] || l1_no_verdict "$rc" "$out"
  [ "$rc" -eq "$want" ] || fail "tools/nested-host/run exited $rc, expected $want"
}
has() { printf '%s\n' "$out" | grep -q -x -- "$1" || fail "no line '$1' in the output"; }
# The build that checks running nvhv in L1 use: NVHV_BUILD_DIR (set by ctest) or SOURCE_DIR/build.
build=${NVHV_BUILD_DIR:-$src/build}
testos=$build/guest-images/testos.elf nvhv=$build/bin/nvhv

case "$what" in
  smoke)
    # /dev/kvm inside L1, and this machine's tree visible at the same path; L1's KVM without
    # nested paging unless NVHV_NESTED_NPT=1; a MODULE.PARAM=VALUE word of NVHV_NESTED_APPEND
    # reaches the module it names (kvm-amd.ko is module kvm_amd).
    export NVHV_NESTED_APPEND="${NVHV_NESTED_APPEND:-} kvm.halt_poll_ns=12345 kvm_amd.dump_invalid_vmcb=1"
    run_l1 0 --timeout 240 -- sh -c \
      "test -c /dev/kvm && echo KVM-OK && test -f '$src/CMakeLists.txt' && echo SOURCE-OK &&
       echo halt_poll_ns=\$(cat /sys/module/kvm/parameters/halt_poll_ns) &&
       echo dump_invalid_vmcb=\$(cat /sys/module/kvm_amd/parameters/dump_invalid_vmcb) &&
       echo npt=\$(cat /sys/module/kvm_amd/parameters/npt)"
    has KVM-OK
    has SOURCE-OK
    has halt_poll_ns=12345
    has dump_invalid_vmcb=Y
    if [ "${NVHV_NESTED_NPT:-0}" = 1 ]; then has npt=Y; else has npt=N; fi
    ;;
  nvdimm)
    rm -f "$work/nvdimm.img"
    run_l1 0 --timeout 240 --nvdimm "$work/nvdimm.img:64M" -- sh -c \
      'test -b /dev/pmem0 && echo PMEM-OK && ndctl list -N'
    has PMEM-OK
    ;;
  hung)
    # L1's heartbeat stopping (here: its loop is SIGSTOPped, as if L1's kernel no longer ran
    # it) ends the run with NESTED-HUNG long before the timeout; the command's own output and
    # L1's console up to then are kept.
    s=$(date +%s)
    out=$(NVHV_NESTED_HUNG_AFTER=20 "$run" --timeout 240 -- sh -c \
      'kill -STOP $(pgrep -P 1 -x init) && echo HEARTBEAT-STOPPED && sleep 600' 2>&1)
    rc=$? took=$(($(date +%s) - s))
    printf '%s\n' "$out"
    [ "$rc" -eq 124 ] || fail "tools/nested-host/run exited $rc, expected 124"
    has HEARTBEAT-STOPPED
    has NESTED-HUNG
    [ "$took" -lt 150 ] || fail "took ${took}s: the hang was not detected before the timeout"
    echo "hang detected, run ended after ${took}s"
    # The other failure of the test host that tests take as no verdict: L1's kernel going down
    # (here: an immediate reboot, which ends QEMU under -no-reboot).
    out=$("$run" --timeout 240 -- sh -c 'echo b >/proc/sysrq-trigger; sleep 600' 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [ "$rc" -eq 125 ] || fail "tools/nested-host/run exited $rc after L1 rebooted, expected 125"
    has NESTED-DOWN
    # QEMU's reset log (which has every CPU's reset at start-up) tells it was no triple fault.
    printf '%s\n' "$out" | grep -Eq "QEMU's reset log: no triple fault, .* \([1-9][0-9]* lines logged\)" ||
      fail "no reset log verdict in the output"
    ;;
  power_cut)
    # A power cut loses L1's RAM and page cache but not the NVDIMM: a block written with
    # O_DIRECT survives; one left dirty in the page cache (the device is kept open, so closing
    # it does not flush) must be gone.
    img=$work/power_cut.img
    rm -f "$img"
    marker=nvhv-marker-$$-$(date +%s)
    run_l1 137 --timeout 240 --nvdimm "$img:64M" \
      --kill-after-line '^MARKER-WRITTEN$' --kill-delay-ms 200 -- sh -c "
        printf $marker | dd of=/dev/pmem0 bs=4096 count=1 conv=sync,fsync oflag=direct status=none &&
        exec 3<>/dev/pmem0 &&
        printf volatile-$marker | dd of=/proc/self/fd/3 bs=4096 seek=1 count=1 conv=sync,notrunc status=none &&
        echo \"CACHED:\$(dd if=/dev/pmem0 bs=4096 skip=1 count=1 status=none | tr -d '\\0')\" &&
        echo MARKER-WRITTEN && sleep 600"
    has NESTED-POWER-CUT
    has "CACHED:volatile-$marker"
    run_l1 0 --timeout 240 --nvdimm "$img:64M" -- sh -c '
      echo "DURABLE:$(dd if=/dev/pmem0 bs=4096 count=1 iflag=direct status=none | tr -d "\0")"
      echo "VOLATILE:$(dd if=/dev/pmem0 bs=4096 skip=1 count=1 iflag=direct status=none | tr -d "\0")"'
    has "DURABLE:$marker"
    has "VOLATILE:"
    ;;
  devdax)
    # nvhv with guest RAM on a device-DAX node in L1: testos ticks, SIGPWR checkpoints it, a
    # second nvhv resumes it from /dev/dax0.0 with its ticks going on.
    [ -x "$nvhv" ] || { echo "SKIP: $nvhv not built"; exit 77; }
    devdax_session() {
      rm -f "$work/devdax.img"
      # 120 s, not ctest's 300: a session takes 25-45 s, and a hung one must end (and print what
      # it saw) before ctest kills the whole test without its output.
      run_l1 0 --timeout 120 --nvdimm "$work/devdax.img:512M" -- sh -c "
        ndctl create-namespace -f -e namespace0.0 -m devdax -a 2M >/dev/null || exit 3
        cat >/tmp/g.json <<J
{\"name\": \"devdax\", \"vcpus\": 2, \"memory\": {\"size_mib\": 256, \"backing\": \"/dev/dax0.0\"},
 \"kernel\": \"$testos\", \"cmdline\": \"tick_ms=100 mem_mib=64\"}
J
        '$nvhv' run /tmp/g.json >/tmp/first.out 2>&1 &
        pid=\$!
        i=0; until grep -q 'tick 5 ok' /tmp/first.out; do i=\$((i+1)); [ \$i -lt 300 ] || exit 4; sleep 0.2; done
        kill -PWR \$pid; wait \$pid; echo FIRST-EXIT \$?
        cat /tmp/first.out
        timeout 60 '$nvhv' run /tmp/g.json >/tmp/second.out 2>&1 &
        pid=\$!
        i=0; until grep -q 'tick 12 ok' /tmp/second.out; do i=\$((i+1)); [ \$i -lt 300 ] || break; sleep 0.2; done
        kill -TERM \$pid 2>/dev/null; wait \$pid
        sed 's/^/SECOND: /' /tmp/second.out"
    }
    # Known failure, not understood (docs/tier2.md): in L1, whose KVM runs on QEMU's emulated SVM,
    # vCPU 1 of the resumed guest sometimes triple faults after ticking on for a while (1 of 5
    # runs under load here; it failed two CI runs, the second with one retry allowed and for a
    # reason the output on record does not show). When the resume
    # had worked (ticks went on), the session is run again with a RETRY line, up to three
    # attempts in all: a fault that nvhv causes comes back every time and fails the test.
    # A shutdown exit that L1's KVM traced at an L1 kernel address (testos never runs there) is
    # TCG's #VMEXIT fault taken as the guest's (docs/tier2.md), in either session: also retried.
    tcg_fault() { printf '%s\n' "$out" | grep -q "kvm_exit: vcpu [0-9]* reason shutdown rip 0xffff[89a-f]"; }
    resumed_then_faulted() {
      printf '%s\n' "$out" | grep -q "^SECOND: nvhv: resumed gen=1" &&
        printf '%s\n' "$out" | grep -q "^SECOND: testos: tick [0-9]* ok" &&
        printf '%s\n' "$out" | grep -q "^SECOND: nvhv: error: vcpu[0-9]*: triple fault" &&
        ! printf '%s\n' "$out" | grep -q "^SECOND: testos: tick 12 ok"
    }
    attempt=1
    devdax_session
    while [ $attempt -lt 3 ] && { resumed_then_faulted || tcg_fault; }; do
      attempt=$((attempt + 1))
      if tcg_fault; then
        echo "RETRY: L1's KVM saw the guest shut down at an L1 kernel address; attempt $attempt of 3"
      else
        echo "RETRY: a vCPU triple faulted in L1 after a working resume; attempt $attempt of 3"
      fi
      devdax_session
    done
    has "FIRST-EXIT 0"
    printf '%s\n' "$out" | grep -q "mapped /dev/dax0.0 (device-DAX" || fail "no device-DAX mapping in the log"
    printf '%s\n' "$out" | grep -q "^SECOND: nvhv: resumed gen=1" || fail "the second run did not resume"
    printf '%s\n' "$out" | grep -q "^SECOND: testos: tick 12 ok" || fail "ticks did not continue after the resume"
    printf '%s\n' "$out" | grep -q "^SECOND: testos: boot" && fail "testos booted again"
    printf '%s\n' "$out" | grep -q "CORRUPT" && fail "CORRUPT"
    ;;
  kvm_trace)
    # A guest's triple fault as L1's KVM saw it: nvhv can print only the vCPU's reset state
    # (AMD), the harness's trace of kvm_exit keeps where the guest was (docs/tier2.md).
    [ -x "$nvhv" ] && [ -r "$testos" ] || { echo "SKIP: $nvhv or $testos not built"; exit 77; }
    run_l1 0 --timeout 240 -- sh -c "
      cat >/tmp/g.json <<J
{\"name\": \"tf\", \"vcpus\": 1, \"memory\": {\"size_mib\": 64}, \"kernel\": \"$testos\",
 \"cmdline\": \"tick_ms=50 triple_fault_after=3\"}
J
      '$nvhv' run /tmp/g.json 2>&1; echo NVHV-EXIT \$?"
    has "NVHV-EXIT 1"
    printf '%s\n' "$out" | grep -q "testos: triple fault" || fail "testos did not get to its triple fault"
    line=$(printf '%s\n' "$out" | grep '^L1-KVM-TRACE .*kvm_exit: .*reason shutdown' | tail -1)
    [ -n "$line" ] || fail "no traced shutdown exit (L1-KVM-TRACE ... kvm_exit: ... reason shutdown)"
    rip=$(printf '%s\n' "$line" | sed -n 's/.* rip \(0x[0-9a-f]*\).*/\1/p')
    echo "traced: $line"
    case $rip in ""|0x0|0xfff0) fail "the traced shutdown has no guest RIP ($rip)" ;; esac
    ;;
  *) fail "unknown check $what" ;;
esac
echo PASS
