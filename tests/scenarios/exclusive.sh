# A main or spare used by a remap target of another mapped device is refused, naming that device;
# a reload of the same device works; two segments of one table may not share a spare or overlap
# on main (distinct areas: multi_segment).
# timeout: 120
. /scenarios/lib.sh
load_module
create r0 "0 65536 remap $MAIN 0 $SPARE"
r0=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
refused() {
	expect_fail "$1" dmsetup create r1 --table "$2"
	dmsetup remove r1 2>/dev/null
	dmesg | tail -5 | grep -q "$3" || fail "$1: no '$3' in the kernel log: $(dmesg | tail -3)"
}
refused "r0's spare as spare" "0 65536 remap $SPARE2 0 $SPARE" \
	"Spare device $(devno $SPARE) is already used by remap device $r0"
refused "r0's main as main (another area)" "0 65536 remap $MAIN 65536 $SPARE2" \
	"Main device $(devno $MAIN) is already used by remap device $r0"
refused "r0's spare as main" "0 65536 remap $SPARE 0 $SPARE2" \
	"Main device $(devno $SPARE) is already used by remap device $r0"
refused "r0's main as spare" "0 65536 remap $SPARE2 0 $MAIN" \
	"Spare device $(devno $MAIN) is already used by remap device $r0"
check "reload of r0 itself" dmsetup reload r0 --table "0 65536 remap $MAIN 0 $SPARE"
check "resume r0" dmsetup resume r0
assert_eq "r0 after reload" "$(field r0 7)" active
check "remove r0" dmsetup remove r0
check "r1 once r0 is gone" dmsetup create r1 --table "0 65536 remap $MAIN 65536 $SPARE2"
check "remove r1" dmsetup remove r1

info "one table"
printf '0 32768 remap %s 0 %s\n32768 32768 remap %s 65536 %s\n' "$MAIN" "$SPARE" "$MAIN" "$SPARE" > /tmp/t
refused_t() {
	expect_fail "$1" dmsetup create r2 /tmp/t
	dmsetup remove r2 2>/dev/null
	dmesg | tail -5 | grep -q "$2" || fail "$1: no '$2' in the kernel log: $(dmesg | tail -3)"
}
refused_t "two segments sharing a spare" "Spare device $(devno $SPARE) is used by another remap target of this table"
printf '0 32768 remap %s 0 %s\n32768 32768 remap %s 16384 %s\n' "$MAIN" "$SPARE" "$MAIN" "$SPARE2" > /tmp/t
refused_t "two segments overlapping on main" "Main device $(devno $MAIN) is used by another remap target of this table"
info "exclusive use: ok"
