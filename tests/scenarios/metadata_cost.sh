# Metadata written per commit: a single remap appends one 4 KiB journal block (with the moved
# 512-byte block, 9 sectors written to the spare), with no existing remaps and with 20000; the
# whole index is written only by checkpoints, which the worker writes once the journal is half
# full. Sectors written to the spare are read from /sys/block/<spare>/stat around each remap.
# timeout: 900
. /scenarios/lib.sh
load_module
SDEV=$(basename "$(readlink -f $SPARE)")
written() { awk '{print $7}' /sys/block/$SDEV/stat; }
blank $SPARE
create r0 "0 $((256 * 2048)) remap $MAIN 0 $SPARE 1 block_size:512"
check "fill" dd if=/dev/urandom of=/dev/mapper/r0 bs=1M count=16 oflag=direct status=none
# singles TAG FIRST: 40 single remaps from block FIRST on (every 7th block); reports the median and
# the mean of the sectors each wrote to the spare and the number of commits; the median goes to
# /tmp/med.
singles() {
	: > /tmp/cost
	c0=$(msg r0 stats | sed -n 's/^commits=//p')
	for i in $(seq 0 39); do
		w0=$(written)
		msg r0 remap $(( $2 + i * 7 )) >/dev/null || fail "remap $(( $2 + i * 7 ))"
		echo $(( $(written) - w0 )) >> /tmp/cost
	done
	c1=$(msg r0 stats | sed -n 's/^commits=//p')
	med=$(sort -n /tmp/cost | sed -n 20p)
	mean=$(awk '{s += $1} END {print int(s / NR)}' /tmp/cost)
	info "$1: sectors written per single remap: median $med, mean $mean, max $(sort -n /tmp/cost | tail -1) (commits: $((c1 - c0)))"
	echo "$med" > /tmp/med
}
# The first commit after formatting is a checkpoint (the journal starts behind it).
check "first remap" msg r0 remap 0
singles "0 existing remaps" 100
med0=$(cat /tmp/med)
[ "$med0" -le 9 ] || fail "median sectors per single remap with no remaps: $med0 (want 9: a journal block and the data)"
info "20000 remaps, 1000 per commit"
for r in $(seq 0 19); do
	msg r0 remap $(( 10000 + r * 1000 )) 1000 >/dev/null || fail "remap run $r"
done
assert_eq "remapped" "$(field r0 1)" 20041
singles "20041 existing remaps" 40000
med1=$(cat /tmp/med)
[ "$med1" -le 9 ] || fail "median sectors per single remap with 20041 remaps: $med1 (want 9)"
dmremap inspect $SPARE | grep "^journal:"
check "remove" dmsetup remove r0
out=$(dmremap inspect $SPARE) || fail "inspect: $out"
echo "$out" | grep -q "^records: 20081 (20081 remapped" || fail "inspect after remove: $out"
create r0 "0 $((256 * 2048)) remap $MAIN 0 $SPARE 1 block_size:512"
assert_eq "remapped after re-create (checkpoint + journal replayed)" "$(field r0 1)" 20081
check "remove" dmsetup remove r0
info "metadata cost: ok"
