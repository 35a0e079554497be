# dm-flakey and dm-dust under the target as error sources. flakey error_writes (every write to
# main fails): each block of the failed writes heals onto the spare, the application sees success
# and fio verifies the data. flakey drop_writes and corrupt_bio_byte (reads) succeed below the
# target with lost or wrong data, which the target cannot detect: nothing is counted or moved
# (a limit this cell pins down), while blocks already on the spare are unaffected. dm-dust: a bad
# block fails the read with EIO and becomes pending, the next write heals it. Counters and events
# match; suspend, resume and remove stay within 10 s; remaps and data survive re-creation.
# timeout: 240
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
N=131072
FL="0 $N flakey $MAIN 0"
# flakey TABLE_TAIL: switch the flakey device's mode (up 1000 s, down 0 s = always up; up 0 s,
# down 1 s = always down).
flakey() { check "flakey $*" dmsetup reload fl --table "$FL $*" && check "suspend fl" dmsetup suspend fl &&
	check "resume fl" dmsetup resume fl; }
check "blank spare" blank $SPARE
create fl "$FL 1000 0"
T="0 $N remap /dev/mapper/fl 0 $SPARE"
ev0=$(ev_seq)
create r0 "$T"
check "fio baseline on main" fio_fill /dev/mapper/r0 0 1M
random_file /tmp/old 128
check "old data at 8 MiB" dd if=/tmp/old of=/dev/mapper/r0 bs=64K seek=128 oflag=direct conv=notrunc status=none

info "flakey error_writes: every failed write heals onto the spare"
flakey 0 1 1 error_writes
check "1 MiB of 64 KiB writes, all failing on main" fio_fill /dev/mapper/r0 4M 1M
assert_eq "remapped (every block of the failed writes)" "$(field r0 1)" 256
assert_eq "write errors (one per bio)" "$(field r0 5)" 16
msg r0 stats | grep -q "^healed_writes=16$" || fail "healed_writes: $(msg r0 stats)"
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" 256
assert_eq "write io_error events" "$(ev_count "$ev0" io_error '"op":"write"')" 16
check "healed writes read back" fio_check /dev/mapper/r0 4M 1M
check "reads from main still work" fio_check /dev/mapper/r0 0 1M

info "flakey drop_writes: dropped below the target, which cannot know"
flakey 0 1 1 drop_writes
random_file /tmp/new 128
check "write that main drops" dd if=/tmp/new of=/dev/mapper/r0 bs=64K seek=128 oflag=direct conv=notrunc status=none
random_file /tmp/onspare 128
check "write to blocks on the spare" dd if=/tmp/onspare of=/dev/mapper/r0 bs=64K seek=64 oflag=direct conv=notrunc status=none
assert_eq "remapped" "$(field r0 1)" 256
assert_eq "write errors" "$(field r0 5)" 16
flakey 1000 0
assert_eq "main kept the old data (the dropped write is lost)" "$(sha_range /dev/mapper/r0 16384 128)" "$(sha /tmp/old)"
assert_eq "the write to the spare blocks is there" "$(sha_range /dev/mapper/r0 8192 128)" "$(sha /tmp/onspare)"

info "flakey corrupt_bio_byte on reads: wrong data with success, undetectable"
# The first byte of every read from main becomes a value it does not hold now.
b0=$(od -An -tu1 -N1 /tmp/old | tr -d ' ')
flakey 0 1 5 corrupt_bio_byte 1 r $(( (b0 + 1) % 256 )) 0
[ "$(sha_range /dev/mapper/r0 16384 8)" != "$(dd if=/tmp/old bs=4K count=1 status=none | sha256sum | cut -d' ' -f1)" ] ||
	fail "the read from main was not corrupted"
assert_eq "spare blocks read intact" "$(sha_range /dev/mapper/r0 8192 128)" "$(sha /tmp/onspare)"
assert_eq "read errors" "$(field r0 4)" 0
assert_eq "remapped" "$(field r0 1)" 256
flakey 1000 0

timed_ms 10000 "suspend" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0
before=$(msg r0 list)
# The healed 1 MiB: fio-verified above, its first 64 KiB since overwritten with /tmp/onspare.
spare_sha=$(sha_range /dev/mapper/r0 8192 2048)
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(msg r0 list)" "$before"
check "main data after re-create" fio_check /dev/mapper/r0 0 1M
assert_eq "spare data after re-create" "$(sha_range /dev/mapper/r0 8192 2048)" "$spare_sha"
check "remove" dmsetup remove r0
check "remove fl" dmsetup remove fl

info "dm-dust: a bad block fails the read and becomes pending; the next write heals it"
check "blank spare" blank $SPARE
create dust "0 $N dust $MAIN 0 512"
check "bad block" dmsetup message dust 0 addbadblock 20008
check "enable" dmsetup message dust 0 enable
T="0 $N remap /dev/mapper/dust 0 $SPARE"
ev0=$(ev_seq)
create r1 "$T"
expect_fail "read of the bad block" dd if=/dev/mapper/r1 of=/dev/null bs=4K skip=2501 count=1 iflag=direct status=none
expect_fail "a 64 KiB read covering it" dd if=/dev/mapper/r1 of=/dev/null bs=64K skip=156 count=1 iflag=direct status=none
assert_eq "pending" "$(field r1 2)" 1
assert_eq "remapped" "$(field r1 1)" 0
[ "$(field r1 4)" -ge 2 ] || fail "read errors: $(dmsetup status r1)"
assert_eq "pending events" "$(ev_count "$ev0" pending_marked)" 1
msg r1 list | grep -q "^20008 2501 - pending" || fail "list: $(msg r1 list)"
check "neighbour reads" dd if=/dev/mapper/r1 of=/dev/null bs=4K skip=2500 count=1 iflag=direct status=none
timed_ms 10000 "remove with a pending block" dmsetup remove r1
create r1 "$T"
assert_eq "pending after re-create" "$(field r1 2)" 1
random_file /tmp/heal 8
check "write heals" dd if=/tmp/heal of=/dev/mapper/r1 bs=4K seek=2501 oflag=direct conv=notrunc status=none
assert_eq "pending after the write" "$(field r1 2)" 0
assert_eq "remapped after the write" "$(field r1 1)" 1
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" 1
assert_eq "healed block" "$(sha_range /dev/mapper/r1 20008 8)" "$(sha /tmp/heal)"
timed_ms 10000 "remove" dmsetup remove r1
create r1 "$T"
assert_eq "remap after re-create" "$(field r1 1)" 1
assert_eq "healed block after re-create (dust still fails it on main)" "$(sha_range /dev/mapper/r1 20008 8)" "$(sha /tmp/heal)"
check "remove" dmsetup remove r1
check "remove dust" dmsetup remove dust
echo "fault_flakey_dust: ok"
