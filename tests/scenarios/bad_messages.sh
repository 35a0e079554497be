# Bad messages get a clear error and change nothing; a full spare says so.
# timeout: 300
. /scenarios/lib.sh
load_module
create r0 "0 65536 remap $MAIN 0 $SPARE2 1 block_size:1048576"
total=$(field r0 3 | cut -d/ -f2)
assert_eq "slots of 1 MiB (all the spare holds besides its metadata)" "$total" "$(md_field $SPARE2 data_slots)"
[ "$total" -ge 250 ] && [ "$total" -lt 256 ] || fail "1 MiB slots on 256 MiB: $total"
msg r0 remap 0 2 >/dev/null || fail "good remap"
state() { dmsetup status r0; msg r0 list; }
before=$(state)
for m in "frobnicate" "remap" "remap x" "remap 12abc" "remap 1-" "remap 65536" "remap 99999999999" \
	"remap 0 0" "remap 0 99999999" "remap 0 1 2" "unremap" "unremap 40000" "unremap 65536" \
	"unremap x" "list x" "list 0 x" "list 70000" "ping 1" "help me" "stats 1" "clear_stats x"; do
	dmesg -c >/dev/null
	expect_fail "message '$m'" dmsetup message r0 0 $m
	dmesg | grep -qE 'dm_remap: .+' || fail "no explanation logged for '$m'"
	assert_eq "state after '$m'" "$(state)" "$before"
done
# Fill the spare: the answer reports the partial result, then ENOSPC.
dmsetup remove r0
check "blank spare" blank $SPARE2
create r0 "0 1048576 remap $MAIN 0 $SPARE2 1 block_size:1048576"
out=$(msg r0 remap 0 300)
echo "$out" | grep -q "remapped $total blocks, 0 already remapped, then failed: error -28" || fail "spare-full answer: $out"
assert_eq "spare full" "$(field r0 3)" "$total/$total"
expect_fail "remap with a full spare" msg r0 remap 524288
check "remove" dmsetup remove r0
info "bad messages rejected"
