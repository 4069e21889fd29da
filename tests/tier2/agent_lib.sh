# Shared by the nvhv-agent tier-2 tests and bench (sourced, POSIX sh). Both functions call the
# sourcing script's fail().

# In L1: loopback up (CRIU's kernel feature probe opens a TCP socket; L1's init leaves lo down)
# and an ext4 -o dax store on L1's NVDIMM at /run/pmem.
l1_dax_store() {
  ip link set lo up || fail "ip link set lo up"
  ndctl create-namespace -f -e namespace0.0 -m fsdax >/dev/null || fail "ndctl create-namespace"
  mkfs.ext4 -q -b 4096 -F /dev/pmem0 || fail mkfs.ext4
  mkdir -p /run/pmem && mount -o dax /dev/pmem0 /run/pmem || fail "mount -o dax"
  grep -q ' /run/pmem .*dax' /proc/mounts || fail "/run/pmem is not mounted with dax"
}

# check_counter_restore CRASH_COUNT RESUMED_COUNT PREV_MS STARTED_MS FINISHED_MS LAST_COUNT
# The counter prints "count ms" every step. The state restored must be the last committed one:
# the line before the resumed count was printed after that checkpoint began (one 10 ms counter
# step of slack for where the freeze hit) and before it was committed; and the count goes on.
check_counter_restore() {
  [ "$3" -ge $(($4 - 20)) ] || fail "restored an older state than the last commit"
  [ "$3" -le "$5" ] || fail "restored a state newer than the last commit"
  [ "$2" -le $(($1 + 1)) ] || fail "resumed beyond the crash"
  [ "$6" -gt $(($2 + 10)) ] || fail "the restored counter does not go on counting"
}
