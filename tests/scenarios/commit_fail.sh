# Failed metadata commits (the spare's superblock and journal writes fail): the change is undone,
# state is metadata_error, the slots those commits took stay reserved (a failed commit may be on
# disk);
# once the spare works again a suspend repairs the damaged copy, a commit frees the slots, and
# both copies are valid with every acknowledged remap.
# timeout: 150
. /scenarios/lib.sh
load_module
SSZ=$(sectors $SPARE)
BSB=$(( (SSZ / 8) * 8 - 8 ))
T="0 262144 remap $MAIN 0 $SPARE"
used() { field r0 3 | cut -d/ -f1; }
trap 'host_do clear-faults vspare0 >/dev/null 2>&1' EXIT
create r0 "$T"
random_file /tmp/d 8
check "write block 3" dd if=/tmp/d of=/dev/mapper/r0 bs=4096 seek=3 oflag=direct status=none
check "remap 0" msg r0 remap 0
assert_eq "slots used" "$(used)" 1

info "both superblocks and the journal fail to write"
JN=$(md_journal_next $SPARE)
[ -n "$JN" ] || fail "no journal sector: $(dmremap inspect $SPARE)"
check "fault copy A" host_do fault vspare0 write 0
check "fault copy B" host_do fault vspare0 write "$BSB"
check "fault the journal" host_do faults vspare0 write "$JN" 8 64
expect_fail "remap 8 with failing metadata writes" msg r0 remap 8
assert_eq "state" "$(field r0 7)" metadata_error
assert_eq "remapped after a failed commit" "$(field r0 1)" 1
assert_eq "the failed commit's slot stays reserved" "$(used)" 2
expect_fail "remap 16 while the spare still fails" msg r0 remap 16
assert_eq "no slot handed out twice while uncertain" "$(used)" 3
msg r0 list | grep -qE "^(8|16) " && fail "an undone remap is listed: $(msg r0 list)"

info "the spare recovers: a suspend repairs, a commit frees the uncertain slots"
check "clear faults" host_do clear-faults vspare0
check "suspend" dmsetup suspend r0
check "resume" dmsetup resume r0
assert_eq "state after the repair" "$(field r0 7)" active
assert_eq "uncertain slots freed" "$(used)" 1
out=$(dmremap inspect $SPARE) || fail "inspect: $out"
echo "$out" | grep -q "^status: valid" || fail "both copies valid after the repair: $out"
check "remap 24" msg r0 remap 24
assert_eq "remapped" "$(field r0 1)" 2
assert_eq "slots used" "$(used)" 2
out=$(dmremap inspect $SPARE) || fail "inspect: $out"
echo "$out" | grep -q "^status: valid" || fail "both copies valid: $out"
check "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 2
msg r0 list | grep -q "^24 3 " || fail "block 3 missing: $(msg r0 list)"
assert_eq "data of block 3" "$(sha_range /dev/mapper/r0 24 8)" "$(sha256sum < /tmp/d | cut -d' ' -f1)"
check "remove" dmsetup remove r0
info "commit failure: ok"
