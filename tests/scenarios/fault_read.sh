# Read errors on main (QEMU blkdebug under the NVMe disk, and dm-dust): an unreadable block
# fails the read with EIO and becomes pending (durably); the next write heals it; a read that
# succeeds on retry moves the recovered data to the spare; errors from the spare fail the bio.
# timeout: 600
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
random_file /tmp/base 128
check "baseline write" dd if=/tmp/base of=/dev/mapper/r0 bs=512 seek=16384 oflag=direct conv=notrunc status=none

info "an unreadable block: EIO, pending"
check "fault" host_do fault nvme0 read 16400
expect_fail "read of the bad block" dd if=/dev/mapper/r0 of=/dev/null bs=4096 skip=2050 count=1 iflag=direct status=none
assert_eq "pending" "$(field r0 2)" 1
assert_eq "remapped" "$(field r0 1)" 0
[ "$(field r0 4)" -ge 1 ] || fail "read errors not counted: $(dmsetup status r0)"
msg r0 list | grep -q "^16400 2050 - pending" || fail "list: $(msg r0 list)"
dmremap events --json | grep -q '"kind":"pending_marked"' || fail "no pending event"
expect_fail "a larger read covering it" dd if=/dev/mapper/r0 of=/dev/null bs=32K skip=256 count=1 iflag=direct status=none
assert_eq "neighbour still reads" "$(sha_range /dev/mapper/r0 16392 8)" "$(dd if=/tmp/base bs=512 skip=8 count=8 status=none | sha256sum | cut -d' ' -f1)"

info "pending survives re-create"
check "remove" dmsetup remove r0
create r0 "$T"
assert_eq "pending after re-create" "$(field r0 2)" 1

info "the next write heals it"
random_file /tmp/heal 8
check "full-block write" dd if=/tmp/heal of=/dev/mapper/r0 bs=4096 seek=2050 count=1 oflag=direct conv=notrunc status=none
assert_eq "pending after heal" "$(field r0 2)" 0
assert_eq "remapped after heal" "$(field r0 1)" 1
assert_eq "healed block reads back" "$(sha_range /dev/mapper/r0 16400 8)" "$(sha256sum < /tmp/heal | cut -d' ' -f1)"

info "a read that succeeds on retry: data returned and saved on the spare"
check "one-shot fault" host_do fault nvme0 read 16440 once
assert_eq "read with one transient error" "$(sha_range /dev/mapper/r0 16440 8)" "$(dd if=/tmp/base bs=512 skip=56 count=8 status=none | sha256sum | cut -d' ' -f1)"
assert_eq "recovered block remapped" "$(field r0 1)" 2
assert_eq "no pending" "$(field r0 2)" 0
msg r0 stats | grep -q "recovered_reads=1" || fail "recovered_reads: $(msg r0 stats)"

info "errors from the spare fail the bio"
check "clear faults" host_do clear-faults nvme0
slot=$(msg r0 list | awk '$2 == 2050 {print $3}')
[ -n "$slot" ] || fail "no slot for block 2050"
# The data area starts after copy A: find it from inspect.
ds=$(dmremap inspect --json $SPARE | sed -n 's/.*"data_start": \([0-9]*\).*/\1/p' | head -1)
[ -n "$ds" ] || fail "no data_start"
check "spare fault" host_do fault vspare0 read $((ds + slot * 8 + 1))
expect_fail "read of a block whose slot fails" dd if=/dev/mapper/r0 of=/dev/null bs=4096 skip=2050 count=1 iflag=direct status=none
dmremap events --json | grep '"kind":"io_error"' | grep -q '"role":"spare"' || fail "no spare io_error event: $(dmremap events --json | tail -3)"
assert_eq "no new pending for spare errors" "$(field r0 2)" 0
check "clear faults" host_do clear-faults vspare0
check "remove" dmsetup remove r0

# The rest needs dm-dust, which not every kernel has (Debian's has not).
have_target dust || { info "SKIPPED dm-dust part: kernel $(uname -r) has no dust target"; exit 0; }
info "dm-dust under the target"
check "blank spare" blank $SPARE
create dust "0 $(sectors $MAIN) dust $MAIN 0 512"
check "bad block" dmsetup message dust 0 addbadblock 70000
check "enable" dmsetup message dust 0 enable
create r1 "0 $(sectors $MAIN) remap /dev/mapper/dust 0 $SPARE 2 block_size:4096 read_retries:1"
expect_fail "read of a dust bad block" dd if=/dev/mapper/r1 of=/dev/null bs=512 skip=70000 count=1 iflag=direct status=none
assert_eq "pending (dust)" "$(field r1 2)" 1
random_file /tmp/d8 8
check "write heals (dust)" dd if=/tmp/d8 of=/dev/mapper/r1 bs=4096 seek=8750 count=1 oflag=direct conv=notrunc status=none
assert_eq "pending after heal (dust)" "$(field r1 2)" 0
assert_eq "data (dust)" "$(sha_range /dev/mapper/r1 70000 8)" "$(sha256sum < /tmp/d8 | cut -d' ' -f1)"
check "remove" dmsetup remove r1
check "remove dust" dmsetup remove dust
echo "fault_read: ok"
