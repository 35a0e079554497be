# A slow main (dm-delay, 300 ms per I/O) with a failing sector under it: while the target heals a
# failed write, I/O to other blocks proceeds at the main's own pace, suspend waits only for the
# heal in progress, and remove after it is quick; a remap of one block does not wait for a slow
# write to a far block. Prints the measured latencies; the bounds are
# the README's (one heal of a bio = its blocks x the main's latency).
# timeout: 300
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
check "blank spare" blank $SPARE
N=$(sectors $MAIN)
create slow "0 $N delay $MAIN 0 300"
T="0 $N remap /dev/mapper/slow 0 $SPARE"
create r0 "$T"
random_file /tmp/w 64
check "fault" host_do fault nvme0 write 8200
t0=$(now_ms)
# A 32 KiB write over 8 blocks, one failing: the heal writes each block to main again (8 x 300
# ms), moves the failing one, flushes main and commits.
dd if=/tmp/w of=/dev/mapper/r0 bs=32K seek=128 count=1 oflag=direct conv=notrunc status=none &
pid=$!
sleep 1
timed_ms 3000 "read of another block during the heal" dd if=/dev/mapper/r0 of=/dev/null bs=4K count=1 skip=1000 iflag=direct status=none
timed_ms 20000 "suspend during the heal" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0
wait $pid || fail "the healing write failed"
info "healing write: $(( $(now_ms) - t0 )) ms"
assert_eq "remapped" "$(field r0 1)" 1
assert_eq "data" "$(sha_range /dev/mapper/r0 8192 64)" "$(sha256sum < /tmp/w | cut -d' ' -f1)"
timed_ms 10000 "remove after the heal" dmsetup remove r0
check "clear faults" host_do clear-faults nvme0
create r0 "$T"
assert_eq "remap after re-create" "$(field r0 1)" 1
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 8192 64)" "$(sha256sum < /tmp/w | cut -d' ' -f1)"
check "remove" dmsetup remove r0
check "remove delay" dmsetup remove slow

# A block move waits only for the bios in flight near the blocks it moves: with the last MiB of
# main behind dm-delay (8 s per I/O), a remap of block 0 completes while a write to a block in
# that MiB is still in flight (a remap of block 1 with nothing in flight is timed for comparison).
info "far slow write"
check "blank spare" blank $SPARE
D=2048
printf '0 %d linear %s 0\n%d %d delay %s %d 8000\n' $((N - D)) $MAIN $((N - D)) $D $MAIN $((N - D)) >/tmp/part.table
check "dmsetup create part" dmsetup create part /tmp/part.table
create r1 "0 $N remap /dev/mapper/part 0 $SPARE"
timed_ms 4000 "remap of block 1, no I/O in flight" msg r1 remap 8
t0=$(now_ms)
dd if=/tmp/w of=/dev/mapper/r1 bs=4K count=1 seek=$(( (N - D) / 8 + 16 )) oflag=direct conv=notrunc status=none &
pid=$!
sleep 1
timed_ms 4000 "remap of block 0 during a slow write to a far block" msg r1 remap 0
kill -0 $pid 2>/dev/null || fail "the far write was no longer in flight when the remap ended"
wait $pid || fail "the far write failed"
info "far write: $(( $(now_ms) - t0 )) ms"
assert_eq "remapped" "$(field r1 1)" 2
check "remove r1" dmsetup remove r1
check "remove part" dmsetup remove part
echo "fault_slow_main: ok"
