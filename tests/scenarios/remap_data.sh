# Every byte reads back right with remapped blocks (single, adjacent, ranges), for direct I/O of
# 512 B to 1 MiB at odd alignments, before and after writes; remapped data lives on the spare.
# timeout: 900
. /scenarios/lib.sh
load_module
MB=64
create r0 "0 $((MB * 2048)) remap $MAIN 0 $SPARE"
random_file /tmp/model $((MB * 2048))
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
# Remap singles, adjacent pairs, a run crossing a 1 MiB boundary, and the first and last block.
for s in 0 8 16 24 4096 4104 20000 20008 $((MB * 2048 - 8)); do
	msg r0 remap $s >/dev/null || fail "remap $s"
done
out=$(msg r0 remap 4080 64) || fail "remap range"
echo "$out" | grep -q "remapped 62 blocks, 2 already remapped" || fail "range answer: $out"
assert_eq "remapped count" "$(field r0 1)" 71
assert_eq "spare used" "$(field r0 3 | cut -d/ -f1)" 71
# The spare slot of a remapped block holds its data.
line=$(msg r0 list 4104 1)
set -- $line
slot=$3
assert_eq "list line" "$1 $2 $4" "4104 513 remapped"
assert_eq "slot contents" "$(read_at "$SPARE" $(slot_byte $SPARE $slot 4096) 4096)" "$(file_at /tmp/model $((4104 * 512)) 4096)"
check_all() {
	assert_eq "whole device ($1)" "$(sha_range /dev/mapper/r0 0 $((MB * 2048)))" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
	for spec in 0:512 512:1024 3584:4096 4096:8192 7680:1048576 1536:65536 1024000:131072 \
		2047488:12288 10240000:1048576 $((MB * 1048576 - 4608)):4608 $((MB * 1048576 - 1048576)):1048576; do
		off=${spec%:*} len=${spec#*:}
		assert_eq "read $len at $off ($1)" "$(read_at /dev/mapper/r0 "$off" "$len")" "$(file_at /tmp/model "$off" "$len")"
	done
}
check_all "after remaps"
# Writes at odd alignments across remapped and plain blocks.
for spec in 512:512 3584:1024 7680:1048576 1022976:8192 2047488:12288 10238976:65536 \
	$((MB * 1048576 - 4608)):4608 0:1048576; do
	off=${spec%:*} len=${spec#*:}
	write_at /dev/mapper/r0 /tmp/model "$off" "$len" || fail "write $len at $off"
done
check_all "after writes"
# Main still holds the old data of a remapped block; the new data went to the spare.
assert_eq "spare slot after write" "$(read_at "$SPARE" $(slot_byte $SPARE $slot 4096) 4096)" "$(file_at /tmp/model $((4104 * 512)) 4096)"
# unremap moves data back to main.
for s in 0 4104 4080 4088; do msg r0 unremap $s >/dev/null || fail "unremap $s"; done
assert_eq "remapped after unremap" "$(field r0 1)" 67
check_all "after unremaps"
assert_eq "main after unremap" "$(read_at "$MAIN" $((4104 * 512)) 4096)" "$(file_at /tmp/model $((4104 * 512)) 4096)"
msg r0 stats
check "remove" dmsetup remove r0
info "data correct with remaps"
