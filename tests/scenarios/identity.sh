# Stable identity and activation: dmremap create records the main device's sysfs identity
# (table option main_id), the set's name and a REMAP-<uuid> device-mapper UUID; a table with
# another main_id is refused, the same main_id under another kernel name is accepted;
# dmremap activate brings the set back from its spare (idempotent), deactivate removes it; a
# spare written by format version 1 (named its main by kernel name) loads, keeps its remaps and
# is migrated to version 3 (the current format).
# timeout: 420
. /scenarios/lib.sh
load_module
SZ=$(sectors $MAIN)
S=$SPARE2
ID=$(cat /sys/block/nvme0n1/wwid)
info "main's stable identity: $ID"
[ -n "$ID" ] || fail "no wwid for the NVMe main"
inspect_has() { dmremap inspect "$S" | grep -qF "$1" || { dmremap inspect "$S"; fail "inspect lacks '$1'"; }; }
# refused MESSAGE TABLE: the table fails with MESSAGE as ti->error.
refused() {
	dmesg -c >/dev/null
	expect_fail "table '$2'" dmsetup create bad --table "$2"
	dmesg | grep 'remap: ' | grep -qF "$1" || { dmesg | tail -5; fail "no '$1' for table '$2'"; }
}

blank $S
check "create" dmremap create r0 --main $MAIN --spare $S
dmsetup table r0 | grep -qF "main_id:$ID" || fail "table lacks main_id: $(dmsetup table r0)"
uuid=$(dmsetup info -c --noheadings -o uuid r0)
case "$uuid" in REMAP-????????????????????????????????) ;; *) fail "dm uuid '$uuid'" ;; esac
inspect_has "name \"r0\", format version 3"
inspect_has "main_id \"$ID\""
random_file /tmp/d 16
check "write" dd if=/tmp/d of=/dev/mapper/r0 bs=512 seek=800 oflag=direct conv=notrunc status=none
want=$(sha256sum < /tmp/d | cut -d' ' -f1)
check "remap" dmremap remap r0 800 --count 2
check "remove" dmremap remove r0

info "another main_id is refused, no main_id is refused with a hint, the same one is accepted"
refused "main_id differs" "0 $SZ remap $MAIN 0 $S 1 main_id:some-other-disk"
refused "the table has none (add main_id" "0 $SZ remap $MAIN 0 $S"
refused "Invalid main_id" "0 $SZ remap $MAIN 0 $S 1 main_id:"
create r1 "0 $SZ remap $MAIN 0 $S 1 main_id:$ID"
assert_eq "remaps kept" "$(field r1 1)" 2
check "remove" dmsetup remove r1

info "the same disk under another kernel name (a linear alias of it) is accepted"
create alias "0 $SZ linear $MAIN 0"
create r1 "0 $SZ remap /dev/mapper/alias 0 $S 1 main_id:$ID"
assert_eq "remaps kept" "$(field r1 1)" 2
assert_eq "data through the alias" "$(sha_range /dev/mapper/r1 800 16)" "$want"
check "remove" dmsetup remove r1
check "remove alias" dmsetup remove alias
inspect_has "name \"r1\", format version 3"

info "activate from the spare, idempotently; deactivate"
check "activate" dmremap activate "$S"
# The last table recorded the name r1.
assert_eq "dm uuid kept" "$(dmsetup info -c --noheadings -o uuid r1)" "$uuid"
assert_eq "data after activation" "$(sha_range /dev/mapper/r1 800 16)" "$want"
out=$(dmremap activate --all --json) || fail "activate --all: $out"
echo "$out" | grep -q '"already_active"' || fail "second activation: $out"
check "deactivate" dmremap deactivate r1
[ -e /dev/mapper/r1 ] && fail "r1 still there"
check "activate --all" dmremap activate --all
assert_eq "data after activate --all" "$(sha_range /dev/mapper/r1 800 16)" "$want"
check "deactivate" dmremap deactivate r1
expect_fail "activate a blank device" dmremap activate "$SPARE"

info "a format version 1 spare (written by the previous code) loads and is migrated"
blank $S
# Four metadata blocks of a version 1 set (main nvme0n1, 1 GiB; this 256 MiB spare; blocks 10
# and 11 remapped to slots 0 and 1, block 500 pending; copy A seq 3, copy B seq 2), gzip+base64.
v1_block() { echo "$2" | base64 -d | gunzip | dd of=$S bs=512 seek=$1 oflag=direct conv=notrunc status=none; }
v1_block 0 'H4sIAAAAAAACA3PxDfLtqXpvxMjAwOAIxMwMqCCuSpAxLbOipLQoVbfMkAGoTAFFPq8sN9Ugz5CBbCAAxQwcKMIZ39nB9AyoMIy+9RdCz+JlBNMw9zJBaUYoHXBgsz4jwygYBaNgFIyCUTAKRsEoGAWjYBSMglEwCkAAALOBjV4AEAAA'
v1_block 8 'H4sIAAAAAAACA3PxDQqSk/54gpkBAuKqBBnTMitKSotSdcsMGRgdoeIweXTAhcpl5IYxoNQXRhR5JoZRMApGwSgYBaNgFIyCUTAKRsEoGAWjYBTQHQAAVfYuQQAQAAA='
v1_block 522088 'H4sIAAAAAAACA3PxDQpKY7V/w8QAAXFVgoxpmRUlpUWpumWGDIxOUHFmBuyAC5XLyA1jQKkvjCjyTAyjYBSMglEwCkbBKBgFo2AUjIJRMApGwSigOwAAEwWCogAQAAA='
v1_block 524280 'H4sIAAAAAAACA3PxDfI1jBbvZmRgYHACYiYGVBBXJciYlllRUlqUqltmyABUpoAin1eWm2qQZ8hANhCAYgYOFOGM7+xgegZUGEbf+guhZ/EygmlmqHqYuxmhNGd01SFGhlEwCkbBKBgFo2AUjIJRMApGwSgYBaNgFIAAAD8Vn2YAEAAA'
inspect_has "format version 1"
inspect_has "kernel_name \"nvme0n1\""
# Slot data: data_start 2200, 4 KiB slots.
random_file /tmp/s 16
check "slot data" dd if=/tmp/s of=$S bs=512 seek=2200 oflag=direct conv=notrunc status=none
swant=$(sha256sum < /tmp/s | cut -d' ' -f1)
out=$(dmremap activate --json "$S") || fail "activate v1: $out"
echo "$out"
echo "$out" | grep -q '"remap-5e7a1101"' || fail "v1 set activated under the wrong name"
assert_eq "remapped (v1)" "$(field remap-5e7a1101 1)" 2
assert_eq "pending (v1)" "$(field remap-5e7a1101 2)" 1
assert_eq "blocks 10-11 read from their slots" "$(sha_range /dev/mapper/remap-5e7a1101 80 16)" "$swant"
dmesg | grep -q "metadata version 1 is migrated to version 3" || fail "no migration message"
inspect_has "format version 3"
inspect_has "main_id \"$ID\""
inspect_has "name \"remap-5e7a1101\""
check "deactivate" dmremap deactivate remap-5e7a1101
dmremap inspect --json "$S" | grep -q '"status": "degraded"' || fail "the version 1 copy is not reported as stale"
info "after migration: the old copy is rewritten on the next load, both copies are version 3"
check "activate" dmremap activate "$S"
check "deactivate" dmremap deactivate remap-5e7a1101
dmremap inspect --json "$S" | grep -q '"status": "valid"' || fail "other copy not valid after the rewrite"
[ "$(dmremap inspect --json "$S" | grep -c '"version": 3')" -ge 3 ] || fail "not every superblock is version 3"
dmremap inspect --json "$S" | grep -q '"version": 1' && fail "a version 1 superblock is left"
info "ok"
