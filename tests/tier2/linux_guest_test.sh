#!/bin/sh
# Tier 2 (docs/tier2.md): Debian's kernel boots under nvhv inside the nested test host, first as
# the ELF vmlinux (64-bit Linux boot protocol at startup_64), then as the bzImage. The first boot
# writes a token to an ext4 file on a virtio-blk disk (sync, read back) and to the guest's
# /dev/pmem0 (an E820 type-12 pmem region); the second boot finds both.
# Usage: linux_guest_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -u
src=$1 build=$2 work=$3
guest=$build/guest-images/linux
nvhv=$build/bin/nvhv
for f in "$guest/vmlinux" "$guest/vmlinuz" "$guest/initrd.img" "$nvhv"; do
  [ -r "$f" ] || { echo "SKIP: $f missing (target linux_guest needs linux-image-amd64 and busybox-static)"; exit 77; }
done
for c in qemu-system-x86_64 mkfs.ext4 python3 base64; do
  command -v "$c" >/dev/null || { echo "SKIP: $c missing (tools/setup-deps test)"; exit 77; }
done
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work"
rm -f "$work/disk.img"
truncate -s 64M "$work/disk.img" && mkfs.ext4 -q -F "$work/disk.img" || fail "mkfs.ext4"
token=nvhv-$$-$(date +%s)

first=$(base64 -w0 <<GUEST
mount -t ext4 /dev/vda /mnt || exit 1
echo $token >/mnt/token && sync && echo "GUEST-READBACK:\$(cat /mnt/token)"
umount /mnt
[ -b /dev/pmem0 ] && echo "GUEST-PMEM-BYTES:\$((\$(cat /sys/block/pmem0/size) * 512))"
printf %s $token | dd of=/dev/pmem0 bs=4096 count=1 conv=sync,fsync 2>/dev/null
echo "GUEST-CPUS:\$(grep -c ^processor /proc/cpuinfo)"
GUEST
)
second=$(base64 -w0 <<GUEST
mount -t ext4 -o ro /dev/vda /mnt || exit 1
echo "GUEST-SECOND-DISK:\$(cat /mnt/token)"
echo "GUEST-SECOND-PMEM:\$(dd if=/dev/pmem0 bs=4096 count=1 2>/dev/null | tr -d '\000')"
GUEST
)

# Runs inside L1: the disk and pmem files live in L1's RAM (/tmp); this machine's tree is read-only.
cat >"$work/l1.sh" <<L1
set -u
cp "$work/disk.img" /tmp/disk.img || exit 1
boot() {  # boot NAME KERNEL SCRIPT
  cat >/tmp/\$1.json <<J
{"name": "\$1", "vcpus": 2, "memory": {"size_mib": 512},
 "kernel": "\$2", "initrd": "$guest/initrd.img",
 "cmdline": "console=ttyS0 panic=-1 quiet nvhv.run=\$3",
 "disks": [{"path": "/tmp/disk.img"}], "pmem": [{"path": "/tmp/pmem.img", "size_mib": 64}]}
J
  echo "BOOT \$1 \$2"
  "$nvhv" run /tmp/\$1.json 2>&1 | python3 "$src/tests/tier2/stamp_lines.py"
  echo "BOOT-END \$1"
}
boot first "$guest/vmlinux" $first
boot second "$guest/vmlinuz" $second
L1

start=$(date +%s)
out=$("$src/tools/nested-host/run" --timeout 900 -- sh "$work/l1.sh" 2>&1)
rc=$?
printf '%s\n' "$out"
. "$(dirname "$0")/l1_verdict.sh"
l1_no_verdict "$rc" "$out"
[ "$rc" -eq 0 ] || fail "tools/nested-host/run exited $rc"
has() { printf '%s\n' "$out" | grep -q -- "$1" || fail "no '$1' in the output"; }
has "| nvhv-guest: init up"
has "| GUEST-READBACK:$token"
has "| GUEST-PMEM-BYTES:67108864"
has "| GUEST-CPUS:2"
has "| GUEST-SECOND-DISK:$token"
has "| GUEST-SECOND-PMEM:$token"
has "| nvhv: stopped: guest reset (exit status 0)"
[ "$(printf '%s\n' "$out" | grep -c '| nvhv-guest: init up')" -eq 2 ] || fail "expected two boots to reach init"
printf '%s\n' "$out" | grep -q "CORRUPT\|Kernel panic" && fail "a guest panicked"
# Figures for the README: seconds from nvhv's start to the guest's init, per kernel format.
printf '%s\n' "$out" | awk -v total=$(( $(date +%s) - start )) '
  /^BOOT / { name = $2 }
  /\| nvhv-guest: init up/ { printf "TIMING %s: init up %ss after nvhv started\n", name, $1 }
  /\| nvhv: stopped/ { printf "TIMING %s: powered off at %ss\n", name, $1 }
  END { printf "TIMING whole test (L1 boot included): %ss\n", total }'
echo PASS
