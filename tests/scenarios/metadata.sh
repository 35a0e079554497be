# Persistent metadata: remaps survive remove/create, reload (also one made by the old table
# after the new one was loaded) and suspend/resume; one commit per remap batch; a spare of
# another main device or block size is refused; a damaged copy is repaired from the good one;
# a spare with no valid copy is refused and left untouched.
# timeout: 420
. /scenarios/lib.sh
load_module
SZ=$(sectors $MAIN)
T="0 $SZ remap $MAIN 0 $SPARE"
seq_of() { field "$1" 6; }

create r0 "$T"
assert_eq "metadata seq after formatting a blank spare" "$(seq_of r0)" 2
assert_eq "state" "$(field r0 7)" active
random_file /tmp/d 64
check "write" dd if=/tmp/d of=/dev/mapper/r0 bs=512 seek=80 oflag=direct conv=notrunc status=none
want=$(sha256sum < /tmp/d | cut -d' ' -f1)
out=$(msg r0 remap 80 8) || fail "remap 80 8"
assert_eq "remap answer" "$out" "remapped 8 blocks, 0 already remapped"
assert_eq "eight remaps share one commit" "$(seq_of r0)" 3
check "remap 1000" msg r0 remap 1000
check "remap 2000" msg r0 remap 2000
assert_eq "seq after two more" "$(seq_of r0)" 5
check "remove" dmsetup remove r0

info "remaps survive remove + create"
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 10
assert_eq "seq continues from disk" "$(seq_of r0)" 5
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 80 64)" "$want"
check "remap 2500" msg r0 remap 2500
assert_eq "next commit uses the next sequence number" "$(seq_of r0)" 6

info "reload while the old table commits"
check "reload" dmsetup reload r0 --table "$T"
check "remap on the live (old) table" msg r0 remap 3000
check "resume" dmsetup resume r0
assert_eq "new table sees the old table's last remap" "$(field r0 1)" 12
msg r0 list | grep -q "^3000 375 " || fail "block 375 missing after reload: $(msg r0 list)"
check "suspend" dmsetup suspend r0
check "resume" dmsetup resume r0
assert_eq "remapped after suspend/resume" "$(field r0 1)" 12

info "pending blocks persist and a write heals them"
out=$(msg r0 pending 4000 2) || fail "pending"
assert_eq "pending answer" "$out" "marked 2 blocks pending"
assert_eq "pending count" "$(field r0 2)" 2
random_file /tmp/p 8
check "full-block write to a pending block" dd if=/tmp/p of=/dev/mapper/r0 bs=4096 seek=500 oflag=direct conv=notrunc status=none
assert_eq "pending after a full write" "$(field r0 2)" 1
assert_eq "remapped after a full write" "$(field r0 1)" 13
assert_eq "healed data" "$(sha_range /dev/mapper/r0 4000 8)" "$(sha256sum < /tmp/p | cut -d' ' -f1)"
random_file /tmp/q 1
check "partial write to a pending (readable) block" dd if=/tmp/q of=/dev/mapper/r0 bs=512 seek=4011 oflag=direct conv=notrunc status=none
assert_eq "pending after a partial write" "$(field r0 2)" 0
assert_eq "remapped after a partial write" "$(field r0 1)" 14
assert_eq "partial data" "$(sha_range /dev/mapper/r0 4011 1)" "$(sha256sum < /tmp/q | cut -d' ' -f1)"
check "remove" dmsetup remove r0

info "inspect agrees"
out=$(dmremap inspect $SPARE) || fail "inspect: $out"
echo "$out"
echo "$out" | grep -q "^status: valid" || fail "inspect status"
dmremap inspect --json $SPARE | grep -q '"remapped": 14' || fail "inspect --json counts: $(dmremap inspect --json $SPARE)"

info "foreign spares are refused"
expect_fail "spare of another main device" dmsetup create r1 --table "0 $(sectors $SPARE2) remap $SPARE2 0 $SPARE"
dmesg | tail -5 | grep -q "belongs to another main device" || fail "no 'another main device' message"
expect_fail "another block size" dmsetup create r1 --table "$T 1 block_size:8192"
dmesg | tail -5 | grep -q "another block_size" || fail "no block_size message"
expect_fail "another main offset" dmsetup create r1 --table "0 8192 remap $MAIN 8 $SPARE"
dmsetup remove r1 2>/dev/null

info "a damaged copy is repaired from the good one"
# Damage the older copy (the newer one is followed by the journal of the commits since).
win=$(dmremap inspect --json $SPARE | sed -n 's/.*"winner": "\([AB]\)".*/\1/p')
bsb=$(( ($(sectors $SPARE) / 8) * 8 - 8 ))
case "$win" in A) old=B at=$((bsb + 1)) ;; B) old=A at=1 ;; *) fail "no winner: $(dmremap inspect $SPARE)" ;; esac
check "corrupt copy $old's superblock" dd if=/dev/urandom of=$SPARE bs=512 seek=$at count=1 oflag=direct conv=notrunc status=none
dmremap inspect $SPARE | grep -q "^status: degraded" || fail "inspect should see copy $old damaged: $(dmremap inspect $SPARE)"
create r0 "$T"
assert_eq "remaps loaded from copy $win" "$(field r0 1)" 14
dmesg | tail -20 | grep -q "is damaged" || fail "no damaged-copy warning"
out=$(dmremap inspect $SPARE)
echo "$out" | grep -q "^status: valid" || fail "copy $old not repaired: $out"
check "remove" dmsetup remove r0

info "no valid copy: refused, nothing written"
ssz=$(sectors $SPARE)
bsb=$(( (ssz / 8) * 8 - 8 ))
check "corrupt copy A" dd if=/dev/urandom of=$SPARE bs=512 seek=1 count=1 oflag=direct conv=notrunc status=none
check "corrupt copy B" dd if=/dev/urandom of=$SPARE bs=512 seek=$((bsb + 1)) count=1 oflag=direct conv=notrunc status=none
a=$(sha_range $SPARE 0 64)
b=$(sha_range $SPARE $((bsb - 56)) 64)
expect_fail "create on a spare with no valid copy" dmsetup create r0 --table "$T"
dmesg | tail -5 | grep -q "refusing to format" || fail "no refusal message"
assert_eq "copy A area untouched" "$(sha_range $SPARE 0 64)" "$a"
assert_eq "copy B area untouched" "$(sha_range $SPARE $((bsb - 56)) 64)" "$b"
echo "metadata: ok"
