# Table shapes: a remap target whose length is not a multiple of the block size (its last block
# is partial) followed by a linear segment on the same disk, and a remap segment that starts at a
# sector of the mapped device that is not a block multiple. Nothing past the target's end on main
# is ever read or written: unremap, healing a write and recovering a read of the partial block
# touch only its part inside the target.
# timeout: 300
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
check "blank spare" blank $SPARE
printf '0 1001 remap %s 0 %s\n1001 15383 linear %s 1001\n' "$MAIN" "$SPARE" "$MAIN" > /tmp/t
check "create" dmsetup create tl /tmp/t
random_file /tmp/all 16384
check "fill" dd if=/tmp/all of=/dev/mapper/tl bs=64K oflag=direct conv=notrunc status=none
assert_eq "remap the partial block" "$(msg tl remap 1000)" "remapped 1 blocks, 0 already remapped"
msg tl list | grep -q "^1000 125 " || fail "block 125 not listed: $(msg tl list)"
random_file /tmp/lin 7
check "write the linear segment after the target" dd if=/tmp/lin of=/dev/mapper/tl bs=512 seek=1001 oflag=direct conv=notrunc status=none
check "unremap the partial block" msg tl unremap 1000
assert_eq "linear segment intact after unremap" "$(sha_range $MAIN 1001 7)" "$(sha /tmp/lin)"
dd if=/tmp/all of=/tmp/s1000 bs=512 skip=1000 count=1 status=none
assert_eq "partial block back on main" "$(sha_range $MAIN 1000 1)" "$(sha /tmp/s1000)"
check "remove" dmsetup remove tl

info "a main that ends with the target (a 1001-sector device)"
create m1001 "0 1001 linear $MAIN 0"
check "blank spare" blank $SPARE2
T="0 1001 remap /dev/mapper/m1001 0 $SPARE2"
create r1 "$T"
assert_eq "remap the last block" "$(msg r1 remap 1000)" "remapped 1 blocks, 0 already remapped"
assert_eq "read it from the spare" "$(sha_range /dev/mapper/r1 1000 1)" "$(sha /tmp/s1000)"
check "unremap it" msg r1 unremap 1000
check "fault" host_do fault nvme0 write 1000
random_file /tmp/w 1
check "a write to the failing last sector heals" dd if=/tmp/w of=/dev/mapper/r1 bs=512 seek=1000 oflag=direct conv=notrunc status=none
assert_eq "healed" "$(field r1 1)" 1
assert_eq "written data" "$(sha_range /dev/mapper/r1 1000 1)" "$(sha /tmp/w)"
check "clear faults" host_do clear-faults nvme0
check "unremap it" msg r1 unremap 1000
assert_eq "back on main" "$(sha_range $MAIN 1000 1)" "$(sha /tmp/w)"
check "fault" host_do fault nvme0 read 1000 once
assert_eq "a read that fails once is recovered" "$(sha_range /dev/mapper/r1 1000 1)" "$(sha /tmp/w)"
assert_eq "recovered onto the spare" "$(field r1 1)" 1
assert_eq "pending" "$(field r1 2)" 0
msg r1 stats | grep -q "^recovered_reads=1$" || fail "recovered_reads: $(msg r1 stats)"
check "clear faults" host_do clear-faults nvme0
check "remove" dmsetup remove r1
create r1 "$T"
assert_eq "remap after re-create" "$(field r1 1)" 1
assert_eq "data after re-create" "$(sha_range /dev/mapper/r1 1000 1)" "$(sha /tmp/w)"
check "remove" dmsetup remove r1
check "remove" dmsetup remove m1001

info "a remap segment starting at sector 3 of the mapped device"
check "blank spare" blank $SPARE
printf '0 3 linear %s 0\n3 16384 remap %s 8 %s\n' "$SPARE2" "$MAIN" "$SPARE" > /tmp/t2
check "create" dmsetup create off /tmp/t2
random_file /tmp/o 64
check "write" dd if=/tmp/o of=/dev/mapper/off bs=512 seek=3 oflag=direct conv=notrunc status=none
assert_eq "lands at main offset 8" "$(sha_range $MAIN 8 64)" "$(sha /tmp/o)"
check "fault" host_do fault nvme0 write 24
random_file /tmp/o2 64
check "a write over a failing block heals" dd if=/tmp/o2 of=/dev/mapper/off bs=32K seek=1536 oflag=direct,seek_bytes conv=notrunc status=none
check "clear faults" host_do clear-faults nvme0
# Block 2 of the segment (main sector 24) is device sector 3 + 16.
assert_eq "remapped" "$(field off 1 | tail -n1)" 1
dmsetup message off 3 list | grep -q "^19 2 " || fail "block 2 not listed at sector 19: $(dmsetup message off 3 list)"
assert_eq "read back" "$(sha_range /dev/mapper/off 3 64)" "$(sha /tmp/o2)"
check "remove" dmsetup remove off
check "create" dmsetup create off /tmp/t2
assert_eq "read back after re-create" "$(sha_range /dev/mapper/off 3 64)" "$(sha /tmp/o2)"
check "remove" dmsetup remove off
echo "table_tail: ok"
