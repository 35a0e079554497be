# A partial write to a pending block whose rest cannot be read from main: the target never invents
# the rest, but does not fail a write the drive can take: the partial data goes to main (a drive
# reallocates on write) and the block stays pending; if main refuses the write too, it fails. A
# full write then heals the block onto the spare.
# timeout: 180
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
check "blank spare" blank $SPARE
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
assert_eq "mark block 2048 pending" "$(msg r0 pending 16384)" "marked 1 blocks pending"
check "fault" host_do fault nvme0 read 16385
# One 512-byte O_DIRECT write bio (fio: GNU dd's 512-byte direct writes to the mapped device were
# seen to reach it as buffered read-modify-writes of the whole page).
w512() { fio --name=w --filename=/dev/mapper/r0 --rw=write --bs=512 --size=512 --offset=$(($1 * 512)) \
	--direct=1 --ioengine=psync --buffer_pattern=0x5a --output=/dev/null; }
printf '%0512d' 0 | tr 0 Z > /tmp/p
check "a 512-byte write into the unreadable pending block goes to main" w512 16388
assert_eq "pending" "$(field r0 2)" 1
assert_eq "remapped" "$(field r0 1)" 0
assert_eq "on main" "$(sha_range $MAIN 16388 1)" "$(sha /tmp/p)"
check "fault" host_do fault nvme0 write 16389
expect_fail "a partial write main refuses too fails" w512 16389
assert_eq "still pending" "$(field r0 2)" 1
assert_eq "nothing remapped" "$(field r0 1)" 0
random_file /tmp/full 8
check "a full write heals the block" dd if=/tmp/full of=/dev/mapper/r0 bs=4K seek=2048 oflag=direct conv=notrunc status=none
assert_eq "pending after the full write" "$(field r0 2)" 0
assert_eq "remapped after the full write" "$(field r0 1)" 1
check "clear faults" host_do clear-faults nvme0
assert_eq "data" "$(sha_range /dev/mapper/r0 16384 8)" "$(sha /tmp/full)"
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remap after re-create" "$(field r0 1)" 1
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 16384 8)" "$(sha /tmp/full)"
check "remove" dmsetup remove r0
echo "fault_pending: ok"
