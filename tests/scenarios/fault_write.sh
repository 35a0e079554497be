# Write errors on main (QEMU blkdebug under the NVMe and the virtio disk) are healed: the
# application sees success, the blocks move to the spare durably, the data reads back. With the
# spare exhausted the error passes through, status and an event say so.
# timeout: 600
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
random_file /tmp/base 512
check "baseline write" dd if=/tmp/base of=/dev/mapper/r0 bs=512 seek=8192 oflag=direct conv=notrunc status=none

info "full-block writes that fail on main"
check "fault" host_do fault nvme0 write 8200
check "fault" host_do fault nvme0 write 8400
random_file /tmp/new 512
check "256 KiB write over two failing blocks succeeds" \
	dd if=/tmp/new of=/dev/mapper/r0 bs=256K seek=16 count=1 oflag=direct conv=notrunc status=none
assert_eq "remapped" "$(field r0 1)" 2
[ "$(field r0 5)" -ge 1 ] || fail "write errors not counted: $(dmsetup status r0)"
assert_eq "data" "$(sha_range /dev/mapper/r0 8192 512)" "$(sha256sum < /tmp/new | cut -d' ' -f1)"
msg r0 list | grep -q "^8200 1025 " || fail "block 1025 not remapped: $(msg r0 list)"
msg r0 list | grep -q "^8400 1050 " || fail "block 1050 not remapped: $(msg r0 list)"

info "a partial write to a failing block is completed from main"
check "fault" host_do fault nvme0 write 9001
cp /tmp/new /tmp/model
dd if=/dev/zero of=/tmp/model bs=512 count=512 seek=512 status=none 2>/dev/null
check "block 1125 baseline" dd if=/tmp/base of=/dev/mapper/r0 bs=4096 seek=1125 count=1 oflag=direct conv=notrunc status=none
random_file /tmp/one 1
check "512-byte write into the failing block succeeds" dd if=/tmp/one of=/dev/mapper/r0 bs=512 seek=9001 oflag=direct conv=notrunc status=none
assert_eq "remapped" "$(field r0 1)" 3
assert_eq "written sector" "$(sha_range /dev/mapper/r0 9001 1)" "$(sha256sum < /tmp/one | cut -d' ' -f1)"
assert_eq "rest of the block kept" "$(sha_range /dev/mapper/r0 9000 1)" "$(dd if=/tmp/base bs=512 count=1 status=none | sha256sum | cut -d' ' -f1)"
msg r0 stats | grep -q "healed_writes=[1-9]" || fail "healed_writes: $(msg r0 stats)"

info "the healed blocks are durable"
check "clear faults" host_do clear-faults nvme0
check "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 3
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 8192 512)" "$(sha256sum < /tmp/new | cut -d' ' -f1)"
check "remove" dmsetup remove r0

info "virtio main"
check "blank spare" blank $SPARE
T2="0 $(sectors $SPARE2) remap $SPARE2 0 $SPARE"
create r1 "$T2"
check "fault" host_do fault vspare1 write 4104
random_file /tmp/v 64
check "32 KiB write over the failing virtio block" dd if=/tmp/v of=/dev/mapper/r1 bs=32K seek=64 count=1 oflag=direct conv=notrunc status=none
# The failing block is moved; its neighbours in the same bio are written to main again (QEMU may
# fail a neighbour too when it merged requests, so allow the whole bio).
n=$(field r1 1)
[ "$n" -ge 1 ] && [ "$n" -le 8 ] || fail "remapped (virtio): $n; $(msg r1 stats)"
msg r1 list | grep -q "^4104 513 " || fail "block 513 not remapped: $(msg r1 list)"
assert_eq "data (virtio)" "$(sha_range /dev/mapper/r1 4096 64)" "$(sha256sum < /tmp/v | cut -d' ' -f1)"
check "clear faults" host_do clear-faults vspare1
check "remove" dmsetup remove r1

info "spare exhausted: the error passes through"
# A 2 MiB spare carved from vdb: a handful of slots.
create tiny "0 4096 linear $SPARE2 0"
check "blank tiny spare" blank /dev/mapper/tiny
create r2 "0 $(sectors $MAIN) remap $MAIN 0 /dev/mapper/tiny"
total=$(field r2 3 | cut -d/ -f2)
[ "$total" -gt 0 ] && [ "$total" -lt 600 ] || fail "tiny spare slots: $total"
out=$(msg r2 remap 0 $((total + 8))) || fail "remap more blocks than slots"
assert_eq "remap more blocks than slots" "$out" "remapped $total blocks, 0 already remapped, then failed: error -28"
expect_fail "remap with the spare full" msg r2 remap $(( (total + 8) * 8 ))
assert_eq "all slots used" "$(field r2 3)" "$total/$total"
assert_eq "state" "$(field r2 7)" spare_exhausted
check "fault" host_do fault nvme0 write 200000
expect_fail "write to a failing block with no free slot" dd if=/tmp/one of=/dev/mapper/r2 bs=512 seek=200000 oflag=direct conv=notrunc,fsync status=none
dmremap events --json | grep -q '"kind":"spare_exhausted"' || fail "no spare_exhausted event: $(dmremap events --json | tail -3)"
check "clear faults" host_do clear-faults nvme0
check "remove" dmsetup remove r2
echo "fault_write: ok"
