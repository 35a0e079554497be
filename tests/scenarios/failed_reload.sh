# A reload whose metadata load fails at resume: the new table refuses changes until a resume
# loads the spare (a message cannot commit a stale index over newer metadata), and every remap
# survives re-creation.
# timeout: 120
. /scenarios/lib.sh
load_module
SSZ=$(sectors $SPARE)
create sp "0 $SSZ linear $SPARE 0"
T="0 262144 remap $MAIN 0 /dev/mapper/sp"
create r0 "$T"
random_file /tmp/d 8
check "write block 2000" dd if=/tmp/d of=/dev/mapper/r0 bs=4096 seek=2000 oflag=direct status=none
want=$(sha256sum < /tmp/d | cut -d' ' -f1)
check "remap 0 16" msg r0 remap 0 16
check "reload" dmsetup reload r0 --table "$T"
# The old table commits after the new one loaded the spare: the new one must load again.
check "remap on the live (old) table" msg r0 remap 16000

info "the spare fails while the new table goes live"
check "spare -> error" dmsetup load sp --table "0 $SSZ error"
check "resume sp" dmsetup resume sp
expect_fail "resume with an unreadable spare" dmsetup resume r0
check "spare back" dmsetup load sp --table "0 $SSZ linear $SPARE 0"
check "resume sp" dmsetup resume sp
expect_fail "a change before the new table loaded the spare" msg r0 remap 24000
dmesg | tail -5 | grep -q "change refused" || fail "no refusal in the kernel log"

info "a resume loads the spare; changes work again"
check "resume again" dmsetup resume r0
assert_eq "remapped after the resume" "$(field r0 1)" 17
check "remap 24000" msg r0 remap 24000
check "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 18
msg r0 list | grep -q "^16000 2000 " || fail "block 2000 lost: $(msg r0 list)"
assert_eq "data of block 2000" "$(sha_range /dev/mapper/r0 16000 8)" "$want"
check "remove" dmsetup remove r0
check "remove sp" dmsetup remove sp
info "failed reload: ok"
