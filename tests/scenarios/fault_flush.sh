# Failed flushes on main (QEMU blkdebug fails every flush of the NVMe main): the flush fails
# (fsync gets EIO) and is never healed as a write (nothing remapped or pending, no slot used);
# the worker, messages, suspend/resume and remove keep working within a bound; acknowledged
# writes read back; remaps survive re-creation.
# timeout: 300
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
check "blank spare" blank $SPARE
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
# One remapped block: map takes its slow path (index lookups, gate) as well.
check "remap a block" msg r0 remap 4096
used0=$(field r0 3)
# The next 40 flushes of main fail (the rest are used up before the faults are cleared).
check "fault" host_do fault nvme0 flush 40
random_file /tmp/d 1024
i=0
while [ $i -lt 8 ]; do
	# Data writes (one onto the remapped block) succeed; the fsync's empty flush fails on main.
	expect_fail "fsync with failing flushes on main ($i)" \
		dd if=/tmp/d of=/dev/mapper/r0 bs=64K count=8 seek=$((i * 8)) oflag=direct conv=notrunc,fsync status=none
	i=$((i + 1))
done
stats=$(msg r0 stats)
echo "$stats" | grep -q "^flush_errors=[1-9]" || fail "flush errors not counted: $stats"
echo "$stats" | grep -q "^healed_writes=0$" || fail "a flush was healed as a write: $stats"
assert_eq "remapped" "$(field r0 1)" 1
assert_eq "pending" "$(field r0 2)" 0
assert_eq "spare slots" "$(field r0 3)" "$used0"
assert_eq "write errors" "$(field r0 5)" 0
assert_eq "ping while flushes fail" "$(msg r0 ping)" pong
check "remap while flushes fail" msg r0 remap 8192
# unremap must make the block durable on main: with main's flushes failing it refuses and keeps
# the block where it is.
expect_fail "unremap needs a working flush on main" msg r0 unremap 4096
assert_eq "remapped" "$(field r0 1)" 2
timed_ms 10000 "suspend with failing flushes" dmsetup suspend r0
timed_ms 10000 "resume with failing flushes" dmsetup resume r0
timed_ms 10000 "remove with failing flushes" dmsetup remove r0
n=0
while ! dd if=/dev/zero of=$MAIN bs=512 count=1 seek=$(( $(sectors $MAIN) - 1 )) oflag=direct conv=notrunc,fsync status=none 2>/dev/null; do
	n=$((n + 1))
	[ $n -lt 40 ] || fail "main's flushes still fail"
done
info "flush faults used up after $n more failing flushes"
check "clear faults" host_do clear-faults nvme0
create r0 "$T"
assert_eq "remaps after re-create" "$(field r0 1)" 2
want=$(sha256sum < /tmp/d | cut -d' ' -f1)
for s in 0 4096 7168; do
	assert_eq "acknowledged writes at $s" "$(sha_range /dev/mapper/r0 $s 1024)" "$want"
done
check "fsync works again" dd if=/tmp/d of=/dev/mapper/r0 bs=64K count=1 oflag=direct conv=notrunc,fsync status=none
check "remove" dmsetup remove r0
echo "fault_flush: ok"
