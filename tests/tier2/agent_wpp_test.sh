#!/bin/sh
# tier2.agent_wpp (tests/tier2/agent.cmake): nvhv-agent keeps a counter process persistent with
# CRIU in L1, on an ext4 -o dax store on L1's NVDIMM; the counter and the agent are SIGKILLed
# (a guest crash, as far as processes can tell), a new agent restores the counter from its last
# committed checkpoint and the count goes on from there.
# Usage: agent_wpp_test.sh SOURCE_DIR AGENT COUNTER WORK_DIR
#        (agent_wpp_test.sh --in-l1 AGENT COUNTER runs the part inside L1)
# Exit 77 (ctest: skipped) when this machine lacks criu or what L1 needs.
set -u
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/agent_lib.sh"

if [ "$1" = --in-l1 ]; then
  agent=$2 counter=$3
  l1_dax_store
  echo "STORE: ext4 -o dax on /dev/pmem0"
  store=/run/pmem/store
  # wait_for FILE REGEX SECONDS
  wait_for() {
    i=0
    until grep -q -- "$2" "$1" 2>/dev/null; do
      i=$((i+1)); [ $i -le $(($3 * 10)) ] || return 1; sleep 0.1
    done
  }
  mkfifo /tmp/in1 /tmp/in2
  "$agent" --stdio --store "$store" -v </tmp/in1 >/tmp/out1 2>/tmp/err1 &
  apid=$!
  exec 3>/tmp/in1
  echo '{"jsonrpc":"2.0","id":1,"method":"agent.wpp.start","params":{"argv":["'"$counter"'"],"interval_ms":100}}' >&3
  wait_for /tmp/out1 '"id":1' 90 || { cat /tmp/out1 /tmp/err1; fail "no answer to agent.wpp.start"; }
  grep '"id":1' /tmp/out1 | grep -q '"result"' || { cat /tmp/out1 /tmp/err1; fail "agent.wpp.start failed"; }
  # Several committed checkpoints: the first full one and incremental ones after it.
  wait_for /tmp/err1 'p1 gen 6 committed' 90 || { cat /tmp/err1; fail "no 6th checkpoint"; }
  echo '{"jsonrpc":"2.0","id":2,"method":"agent.wpp.list"}' >&3
  wait_for /tmp/out1 '"id":2' 30 || fail "no answer to agent.wpp.list"
  cpid=$(sed -n 's/.*"pid":\([0-9]*\),"state":"running".*/\1/p' /tmp/out1 | head -1)
  [ -n "$cpid" ] || { cat /tmp/out1; fail "counter not listed as running"; }
  # The crash: both at once, mid-interval (possibly mid-checkpoint).
  kill -9 "$apid" "$cpid"
  wait "$apid" 2>/dev/null
  exec 3>&-
  sleep 0.2
  log=$store/procs/p1/output.log
  before=$(wc -l <"$log")
  crash_line=$(tail -n 1 "$log")
  committed=$(cat "$store/procs/p1/COMMITTED")
  echo "CHECKPOINTS:"
  sed -n 's/^nvhv: agent: \(p1 gen .* committed .*\)/  \1/p' /tmp/err1
  echo "COMMITTED: $committed"
  ls "$store/procs/p1/ckpt" | tr '\n' ' ' | sed 's/^/GENERATIONS ON DISK: /'; echo

  "$agent" --stdio --store "$store" -v </tmp/in2 >/tmp/out2 2>/tmp/err2 &
  apid=$!
  exec 4>/tmp/in2
  wait_for /tmp/out2 'agent.ready' 90 || { cat /tmp/out2 /tmp/err2; fail "second agent not ready"; }
  cat /tmp/out2 /tmp/err2
  grep 'agent.ready' /tmp/out2 | grep -q '"restored":\["p1"\]' || fail "p1 not restored"
  sleep 1.5
  echo '{"jsonrpc":"2.0","id":3,"method":"agent.wpp.list"}' >&4
  wait_for /tmp/out2 '"id":3' 30 || fail "no answer to agent.wpp.list after restore"
  grep '"id":3' /tmp/out2
  kill -9 "$apid"
  resumed=$(sed -n "$((before + 1))p" "$log")
  last=$(tail -n 1 "$log")
  echo "CRASH: last line before the crash: $crash_line"
  echo "RESUMED: first line after the restore: $resumed; latest: $last"
  # What the restored process had printed last is the line before the resumed count.
  r=${resumed%% *}
  prev=$(awk -v n=$((r - 1)) '$1 == n { print; exit }' "$log")
  prev_ms=${prev#* }
  started=$(printf '%s' "$committed" | sed -n 's/.*"started_ms":\([0-9]*\).*/\1/p')
  finished=$(printf '%s' "$committed" | sed -n 's/.*"finished_ms":\([0-9]*\).*/\1/p')
  crash_count=${crash_line%% *} crash_ms=${crash_line#* }
  echo "RESULT: restored count $((r - 1)) printed at $prev_ms ms; last committed checkpoint ran $started..$finished ms;" \
       "lost $((crash_count - r + 1)) counts = $((crash_ms - prev_ms)) ms of work"
  check_counter_restore "$crash_count" "$r" "$prev_ms" "$started" "$finished" "${last%% *}"
  echo "L1-PASS"
  exit 0
fi

src=$1 agent=$2 counter=$3 work=$4
run=$src/tools/nested-host/run
command -v criu >/dev/null || { echo "SKIP: criu missing (tools/setup-deps test)"; exit 77; }
"$src/tools/mkinitramfs" --newest-kernel >/dev/null || { echo "SKIP: no Debian kernel"; exit 77; }
for c in qemu-system-x86_64 busybox cpio mkfs.ext4 ndctl ip; do
  command -v "$c" >/dev/null || { echo "SKIP: $c missing (tools/setup-deps test)"; exit 77; }
done
[ -x "$agent" ] && [ -x "$counter" ] || { echo "SKIP: $agent or $counter not built"; exit 77; }
mkdir -p "$work"
rm -f "$work/pmem.img"
out=$("$run" --timeout 240 --nvdimm "$work/pmem.img:256M" -- "$0" --in-l1 "$agent" "$counter" 2>&1)
rc=$?
printf '%s\n' "$out"
. "$(dirname "$0")/l1_verdict.sh"
l1_no_verdict "$rc" "$out"
[ "$rc" -eq 0 ] || fail "the L1 part exited $rc"
printf '%s\n' "$out" | grep -q '^L1-PASS$' || fail "no L1-PASS"
echo PASS
