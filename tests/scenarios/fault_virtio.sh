# A virtio-blk main (/dev/vdb) with an NVMe spare, errors from QEMU blkdebug under the virtio
# disk: writes that fail heal (fio verifies every acknowledged block), an unreadable block fails
# the read with EIO and becomes pending, the next write heals it, a read that fails once is
# recovered onto the spare; counters and events match what happened; suspend, resume and remove
# stay within 10 s; remaps, pending state and data survive re-creation.
# timeout: 240
. /scenarios/lib.sh
load_module
VMAIN=$SPARE2 VSPARE=$MAIN
sha() { sha256sum < "$1" | cut -d' ' -f1; }
check "blank spare" blank $VSPARE
T="0 $(sectors $VMAIN) remap $VMAIN 0 $VSPARE"
trap 'host_do clear-faults vspare1 >/dev/null 2>&1' EXIT
ev0=$(ev_seq)
create r0 "$T"

info "write errors on the virtio main heal"
# 4 MiB of 64 KiB writes from 8 MiB (blocks 2048..3071); blocks 2050 and 2560 fail on main.
check "fault" host_do fault vspare1 write 16400
check "fault" host_do fault vspare1 write 20480
check "fio writes over two failing blocks" fio_fill /dev/mapper/r0 8M 4M
msg r0 list | grep -q "^16400 2050 " || fail "block 2050 not remapped: $(msg r0 list)"
msg r0 list | grep -q "^20480 2560 " || fail "block 2560 not remapped: $(msg r0 list)"
moved=$(field r0 1)
# Only the failing blocks move (the others of their bios are written to main again); QEMU may
# fail a request it merged with a neighbour's, so allow up to the two failed bios' 32 blocks.
[ "$moved" -ge 2 ] && [ "$moved" -le 32 ] || fail "remapped: $moved"
werr=$(field r0 5)
[ "$werr" -ge 2 ] || fail "write errors: $werr"
msg r0 stats | grep -q "^healed_writes=[1-9]" || fail "healed_writes: $(msg r0 stats)"
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" "$moved"
assert_eq "write io_error events" "$(ev_count "$ev0" io_error '"op":"write"')" "$werr"
check "acknowledged writes read back (blocks on the spare included)" fio_check /dev/mapper/r0 8M 4M

info "a read error: EIO, pending, durable"
random_file /tmp/base 16
check "baseline" dd if=/tmp/base of=/dev/mapper/r0 bs=4K seek=5000 count=2 oflag=direct conv=notrunc status=none
check "fault" host_do fault vspare1 read 40008
expect_fail "read of the unreadable block" dd if=/dev/mapper/r0 of=/dev/null bs=4K skip=5001 count=1 iflag=direct status=none
assert_eq "pending" "$(field r0 2)" 1
assert_eq "remapped" "$(field r0 1)" "$moved"
msg r0 list | grep -q "^40008 5001 - pending" || fail "list: $(msg r0 list)"
[ "$(field r0 4)" -ge 1 ] || fail "read errors not counted: $(dmsetup status r0)"
assert_eq "pending events" "$(ev_count "$ev0" pending_marked)" 1
dd if=/tmp/base of=/tmp/b0 bs=4K count=1 status=none
assert_eq "its neighbour reads" "$(sha_range /dev/mapper/r0 40000 8)" "$(sha /tmp/b0)"
timed_ms 10000 "remove with a pending block" dmsetup remove r0
create r0 "$T"
assert_eq "pending after re-create" "$(field r0 2)" 1

info "the next write heals it"
random_file /tmp/heal 8
check "full-block write to the pending block" dd if=/tmp/heal of=/dev/mapper/r0 bs=4K seek=5001 oflag=direct conv=notrunc status=none
assert_eq "pending after the write" "$(field r0 2)" 0
moved=$((moved + 1))
assert_eq "remapped after the write" "$(field r0 1)" "$moved"
assert_eq "healed block" "$(sha_range /dev/mapper/r0 40008 8)" "$(sha /tmp/heal)"

info "a read that fails once is recovered"
check "one-shot fault" host_do fault vspare1 read 40000 once
assert_eq "read with one transient error" "$(sha_range /dev/mapper/r0 40000 8)" "$(sha /tmp/b0)"
moved=$((moved + 1))
assert_eq "recovered block moved" "$(field r0 1)" "$moved"
msg r0 stats | grep -q "^recovered_reads=1$" || fail "recovered_reads: $(msg r0 stats)"
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" "$moved"

check "clear faults" host_do clear-faults vspare1
timed_ms 10000 "suspend" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0
before=$(msg r0 list)
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(msg r0 list)" "$before"
check "acknowledged writes after re-create" fio_check /dev/mapper/r0 8M 4M
assert_eq "healed block after re-create" "$(sha_range /dev/mapper/r0 40008 8)" "$(sha /tmp/heal)"
assert_eq "recovered block after re-create" "$(sha_range /dev/mapper/r0 40000 8)" "$(sha /tmp/b0)"
check "remove" dmsetup remove r0
echo "fault_virtio: ok"
