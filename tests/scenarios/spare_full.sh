# Spare full: a 2 MiB spare (dm-linear on /dev/vdb) with every slot used. A write that fails on
# main passes its EIO through (counted in write_errors, state spare_exhausted, a spare_exhausted
# event); a read that fails still marks its block pending (that needs no slot) and fails with EIO,
# and a write to it fails while no slot is free; nothing acknowledged is corrupted (fio verifies,
# blocks on the spare included). An unremap frees a slot and the next failing write heals again.
# Suspend/resume/remove stay within 10 s; remaps and pending blocks survive re-creation.
# timeout: 150
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
trap 'host_do clear-faults nvme0 >/dev/null 2>&1' EXIT
create tiny "0 4096 linear $SPARE2 0"
check "blank tiny spare" blank /dev/mapper/tiny
T="0 262144 remap $MAIN 0 /dev/mapper/tiny"
ev0=$(ev_seq)
create r0 "$T"
check "fio baseline" fio_fill /dev/mapper/r0 0 4M
total=$(field r0 3 | cut -d/ -f2)
[ "$total" -gt 0 ] && [ "$total" -lt 512 ] || fail "tiny spare slots: $total"
assert_eq "remap every slot" "$(msg r0 remap 0 "$total")" "remapped $total blocks, 0 already remapped"
assert_eq "slots" "$(field r0 3)" "$total/$total"
assert_eq "state while slots last" "$(field r0 7)" active

info "a write that fails with no free slot: EIO passes through"
check "fault" host_do fault nvme0 write 16000
random_file /tmp/w 8
expect_fail "write to a failing block" dd if=/tmp/w of=/dev/mapper/r0 bs=4K seek=2000 oflag=direct conv=notrunc status=none
assert_eq "state" "$(field r0 7)" spare_exhausted
assert_eq "write errors" "$(field r0 5)" 1
assert_eq "remapped" "$(field r0 1)" "$total"
assert_eq "pending" "$(field r0 2)" 0
[ "$(ev_count "$ev0" spare_exhausted)" -ge 1 ] || fail "no spare_exhausted event"
assert_eq "write io_error events" "$(ev_count "$ev0" io_error '"op":"write"')" 1
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" "$total"

info "a read that fails: pending without a slot; a write to it fails while the spare is full"
check "fault" host_do fault nvme0 read 24000
expect_fail "read of an unreadable block" dd if=/dev/mapper/r0 of=/dev/null bs=4K skip=3000 count=1 iflag=direct status=none
assert_eq "pending" "$(field r0 2)" 1
assert_eq "pending events" "$(ev_count "$ev0" pending_marked)" 1
expect_fail "write to the pending block with no free slot" dd if=/tmp/w of=/dev/mapper/r0 bs=4K seek=3000 oflag=direct conv=notrunc status=none
assert_eq "still pending" "$(field r0 2)" 1
check "acknowledged writes (on the spare and on main)" fio_check /dev/mapper/r0 0 4M
timed_ms 10000 "suspend with the spare full" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0

info "an unremap frees a slot: the next failing write heals"
check "unremap block 0" msg r0 unremap 0
assert_eq "slots" "$(field r0 3)" "$((total - 1))/$total"
check "write to the failing block heals" dd if=/tmp/w of=/dev/mapper/r0 bs=4K seek=2000 oflag=direct conv=notrunc status=none
assert_eq "state" "$(field r0 7)" active
assert_eq "remapped" "$(field r0 1)" "$total"
msg r0 list | grep -q "^16000 2000 " || fail "block 2000 not remapped: $(msg r0 list | tail -3)"
assert_eq "healed block" "$(sha_range /dev/mapper/r0 16000 8)" "$(sha /tmp/w)"
check "clear faults" host_do clear-faults nvme0
check "acknowledged writes" fio_check /dev/mapper/r0 0 4M
before=$(msg r0 list)
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps and pending after re-create" "$(msg r0 list)" "$before"
assert_eq "state after re-create" "$(field r0 7)" active
check "acknowledged writes after re-create" fio_check /dev/mapper/r0 0 4M
assert_eq "healed block after re-create" "$(sha_range /dev/mapper/r0 16000 8)" "$(sha /tmp/w)"
check "remove" dmsetup remove r0
check "remove tiny" dmsetup remove tiny
echo "spare_full: ok"
