# A heal whose flush of main fails (QEMU blkdebug: a write to one block of main always fails, the
# next flushes of main fail): an 8 KiB write covers a good block (written to main again) and the
# failing one (moved to a fresh slot), then main's flush fails. The write fails with EIO, but the
# move's index change is committed all the same: it survives remove + re-create with the data the
# device returned before, and the next `remap` message reports only its own blocks.
# timeout: 300
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
check "blank spare" blank $SPARE
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
random_file /tmp/base 16
random_file /tmp/new 16

# use_up_flushes: after the mapped device is gone, fail main's remaining injected flushes so that
# the faults can be cleared (see tests/vm/run.py: fault flush).
use_up_flushes() {
	n=0
	while ! dd if=/dev/zero of=$MAIN bs=512 count=1 seek=$(( $(sectors $MAIN) - 1 )) oflag=direct conv=notrunc,fsync status=none 2>/dev/null; do
		n=$((n + 1))
		[ $n -lt 10 ] || fail "main's flushes still fail"
	done
	check "clear faults" host_do clear-faults nvme0
}

# heal_with_failing_flush SECTOR: blocks SECTOR/8 and SECTOR/8 + 1; the second one fails on main.
heal_with_failing_flush() {
	check "baseline at $1" dd if=/tmp/base of=/dev/mapper/r0 bs=8K seek=$(($1 / 16)) oflag=direct conv=notrunc status=none
	check "fault" host_do fault nvme0 write $(($1 + 8))
	check "fault" host_do fault nvme0 flush 2
	expect_fail "write healed while main's flush fails ($1)" \
		dd if=/tmp/new of=/dev/mapper/r0 bs=8K seek=$(($1 / 16)) oflag=direct conv=notrunc status=none
	msg r0 list | grep -q "^$(($1 + 8)) $(($1 / 8 + 1)) " || fail "block $(($1 / 8 + 1)) not remapped: $(msg r0 list)"
}

info "the heal's index change is durable"
heal_with_failing_flush 16384
assert_eq "remapped" "$(field r0 1)" 1
[ "$(field r0 5)" -ge 1 ] || fail "write errors not counted: $(dmsetup status r0)"
seen=$(sha_range /dev/mapper/r0 16384 16)
check "remove" dmsetup remove r0
use_up_flushes
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 1
msg r0 list | grep -q "^16392 2049 " || fail "block 2049 not remapped after re-create: $(msg r0 list)"
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 16384 16)" "$seen"

info "the next remap message counts only its own blocks"
heal_with_failing_flush 24576
assert_eq "remapped" "$(field r0 1)" 2
assert_eq "remap after the heal" "$(msg r0 remap 32768)" "remapped 1 blocks, 0 already remapped"
assert_eq "remapped" "$(field r0 1)" 3
check "remove" dmsetup remove r0
use_up_flushes
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 3
check "remove" dmsetup remove r0
echo "fault_flush_heal: ok"
