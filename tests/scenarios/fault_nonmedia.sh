# Errors that are not media errors pass through untouched: a thin-provisioned main whose pool runs
# out of data space with error_if_no_space fails writes with BLK_STS_NOSPC. The application sees
# ENOSPC, nothing is remapped or marked pending, no spare slot is used, the error is counted in
# passthrough_errors (not as a write error); acknowledged writes read back; suspend/resume and
# remove stay within a bound; remaps made before survive re-creation.
# timeout: 240
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
check "blank spare" blank $SPARE
# Pool: 8 MiB metadata and 4 MiB data carved from vdb; a 32 MiB thin volume as main.
create tmeta "0 16384 linear $SPARE2 0"
create tdata "0 8192 linear $SPARE2 16384"
check "wipe pool metadata" wipe /dev/mapper/tmeta 1
create pool "0 8192 thin-pool /dev/mapper/tmeta /dev/mapper/tdata 128 0 1 error_if_no_space"
check "create thin" dmsetup message pool 0 "create_thin 0"
create thin "0 65536 thin /dev/mapper/pool 0"
T="0 65536 remap /dev/mapper/thin 0 $SPARE"
create r0 "$T"
check "remap a block" msg r0 remap 0
used0=$(field r0 3)
random_file /tmp/d 16384
# 8 MiB of sequential 64 KiB direct writes into 4 MiB of pool: the writes past the space fail.
out=$(dd if=/tmp/d of=/dev/mapper/r0 bs=64K count=128 oflag=direct conv=notrunc 2>&1) &&
	fail "writes beyond the pool's space succeeded: $out"
echo "$out"
echo "$out" | grep -q "No space left on device" || fail "error not passed through as ENOSPC: $out"
done=$(echo "$out" | sed -n 's/^\([0-9]*\)+0 records out.*/\1/p')
[ -n "$done" ] && [ "$done" -gt 0 ] && [ "$done" -lt 128 ] || fail "records written: '$done'"
stats=$(msg r0 stats)
echo "$stats"
echo "$stats" | grep -q "^passthrough_errors=[1-9]" || fail "pass-through errors not counted"
echo "$stats" | grep -q "^healed_writes=0$" || fail "a NOSPC write was healed"
assert_eq "remapped" "$(field r0 1)" 1
assert_eq "pending" "$(field r0 2)" 0
assert_eq "spare slots" "$(field r0 3)" "$used0"
assert_eq "write errors" "$(field r0 5)" 0
dd if=/tmp/d of=/tmp/ack bs=64K count="$done" status=none
assert_eq "acknowledged writes" "$(sha_range /dev/mapper/r0 0 $((done * 128)))" "$(sha256sum < /tmp/ack | cut -d' ' -f1)"
timed_ms 10000 "suspend after NOSPC" dmsetup suspend r0
timed_ms 10000 "resume after NOSPC" dmsetup resume r0
timed_ms 10000 "remove after NOSPC" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(field r0 1)" 1
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 0 $((done * 128)))" "$(sha256sum < /tmp/ack | cut -d' ' -f1)"
check "remove" dmsetup remove r0
for d in thin pool tdata tmeta; do check "remove $d" dmsetup remove $d; done
echo "fault_nonmedia: ok"
