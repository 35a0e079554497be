# Spare errors while a failed write heals (QEMU blkdebug under the NVMe main and the virtio
# spare). One bad slot: the heal retires it and writes the block to the next slot (the write
# succeeds). A spare data area whose every slot fails: after three slots (all retired) the write
# fails with EIO (never acknowledged) and the block becomes pending (its content is unknown); once
# the spare works the next write heals it. Retired slots stay used until the table is loaded
# again. Both metadata copies and the journal fail to write: the write fails with
# EIO, nothing is remapped, state metadata_error with an event, the slot stays reserved until a
# suspend repairs the copy; then the next write heals. Acknowledged writes verify (fio), counters
# and events match, suspend/resume/remove stay within 10 s, remaps survive re-creation.
# timeout: 200
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
used() { field r0 3 | cut -d/ -f1; }
check "blank spare" blank $SPARE
T="0 262144 remap $MAIN 0 $SPARE"
trap 'host_do clear-faults vspare0 >/dev/null 2>&1; host_do clear-faults nvme0 >/dev/null 2>&1' EXIT
ev0=$(ev_seq)
create r0 "$T"
check "fio baseline" fio_fill /dev/mapper/r0 0 1M
ds=$(md_field $SPARE data_start)
[ -n "$ds" ] || fail "no data_start"
SSZ=$(sectors $SPARE)
BSB=$(( (SSZ / 8) * 8 - 8 ))

info "the spare's data area fails while a write heals"
# The first sector of each of the first 64 slots (the allocator hands out slots from these first).
check "spare data faults" host_do faults vspare0 write "$ds" 8 64
check "main fault" host_do fault nvme0 write 16400
random_file /tmp/a 8
expect_fail "write failing on main and on the spare" dd if=/tmp/a of=/dev/mapper/r0 bs=4K seek=2050 oflag=direct conv=notrunc status=none
assert_eq "pending" "$(field r0 2)" 1
assert_eq "remapped" "$(field r0 1)" 0
assert_eq "slots used (three retired)" "$(used)" 3
msg r0 stats | grep -q "^retired_slots=3$" || fail "retired_slots: $(msg r0 stats)"
assert_eq "write errors" "$(field r0 5)" 1
msg r0 stats | grep -q "^healed_writes=0$" || fail "healed_writes: $(msg r0 stats)"
assert_eq "pending events" "$(ev_count "$ev0" pending_marked)" 1
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" 0
msg r0 list | grep -q "^16400 2050 - pending" || fail "list: $(msg r0 list)"
check "clear spare faults" host_do clear-faults vspare0
check "the next write heals it" dd if=/tmp/a of=/dev/mapper/r0 bs=4K seek=2050 oflag=direct conv=notrunc status=none
assert_eq "pending after the heal" "$(field r0 2)" 0
assert_eq "remapped after the heal" "$(field r0 1)" 1
assert_eq "slots used" "$(used)" 4
assert_eq "healed block" "$(sha_range /dev/mapper/r0 16400 8)" "$(sha /tmp/a)"

info "both metadata copies and the journal fail to write while a write heals"
JN=$(md_journal_next $SPARE)
[ -n "$JN" ] || fail "no journal sector: $(dmremap inspect $SPARE)"
check "fault copy A" host_do fault vspare0 write 0
check "fault copy B" host_do fault vspare0 write "$BSB"
check "fault the journal" host_do faults vspare0 write "$JN" 8 64
check "main fault" host_do fault nvme0 write 16800
random_file /tmp/b 8
expect_fail "write whose heal cannot commit" dd if=/tmp/b of=/dev/mapper/r0 bs=4K seek=2100 oflag=direct conv=notrunc status=none
assert_eq "state" "$(field r0 7)" metadata_error
assert_eq "remapped" "$(field r0 1)" 1
assert_eq "pending" "$(field r0 2)" 0
assert_eq "the uncommitted slot stays reserved" "$(used)" 5
msg r0 list | grep -q "^16800 " && fail "an undone remap is listed: $(msg r0 list)"
msg r0 stats | grep -q "^commit_errors=[1-9]" || fail "commit_errors: $(msg r0 stats)"
[ "$(ev_count "$ev0" metadata_write_error)" -ge 1 ] || fail "no metadata_error event"
assert_eq "write errors" "$(field r0 5)" 2
check "clear spare faults" host_do clear-faults vspare0
timed_ms 10000 "suspend (repairs the copy)" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0
assert_eq "state after the repair" "$(field r0 7)" active
out=$(dmremap inspect $SPARE) || fail "inspect: $out"
echo "$out" | grep -q "^status: valid" || fail "both copies valid after the repair: $out"
check "the next write heals it" dd if=/tmp/b of=/dev/mapper/r0 bs=4K seek=2100 oflag=direct conv=notrunc status=none
assert_eq "remapped" "$(field r0 1)" 2
assert_eq "slots used (the reserved one freed)" "$(used)" 5
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" 2
assert_eq "write io_error events" "$(ev_count "$ev0" io_error '"op":"write"')" "$(field r0 5)"

check "clear main faults" host_do clear-faults nvme0
check "acknowledged writes" fio_check /dev/mapper/r0 0 1M
before=$(msg r0 list)
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(msg r0 list)" "$before"
assert_eq "slots used after re-create (retired slots free again)" "$(used)" 2
assert_eq "block 2050 after re-create" "$(sha_range /dev/mapper/r0 16400 8)" "$(sha /tmp/a)"
assert_eq "block 2100 after re-create" "$(sha_range /dev/mapper/r0 16800 8)" "$(sha /tmp/b)"
check "acknowledged writes after re-create" fio_check /dev/mapper/r0 0 1M

info "one bad spare slot: the heal retires it and uses the next one"
# The slot the allocator hands out next: remap a block, read its slot, move it back.
msg r0 remap 24000 >/dev/null || fail "remap 24000"
slot=$(msg r0 list | awk '$1 == 24000 { print $3 }')
[ -n "$slot" ] || fail "no slot for 24000: $(msg r0 list)"
msg r0 unremap 24000 >/dev/null || fail "unremap 24000"
n0=$(used)
check "bad slot $slot" host_do fault vspare0 write $((ds + slot * 8))
check "main fault" host_do fault nvme0 write 17200
random_file /tmp/c 8
check "write healed past the bad slot" dd if=/tmp/c of=/dev/mapper/r0 bs=4K seek=2150 oflag=direct conv=notrunc status=none
assert_eq "block 2150" "$(sha_range /dev/mapper/r0 17200 8)" "$(sha /tmp/c)"
msg r0 list | grep -q "^17200 2150 $slot " && fail "block 2150 in the bad slot $slot"
msg r0 list | grep -q "^17200 2150 [0-9]* remapped" || fail "block 2150 not remapped: $(msg r0 list)"
assert_eq "slots used (the block's and the retired one)" "$(used)" $((n0 + 2))
msg r0 stats | grep -q "^retired_slots=1$" || fail "retired_slots: $(msg r0 stats)"
check "clear faults" host_do clear-faults vspare0
check "clear main faults" host_do clear-faults nvme0
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "block 2150 after re-create" "$(sha_range /dev/mapper/r0 17200 8)" "$(sha /tmp/c)"
assert_eq "slots used after re-create" "$(used)" $((n0 + 1))
check "remove" dmsetup remove r0
echo "fault_spare: ok"
