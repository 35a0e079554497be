# Remap storm: durable remaps per second with group commit (1024 remaps per commit) and with one
# commit per remap, on the NVMe main with a virtio spare. Then the same at 0, 100K and 1M existing
# remaps, with the latency of one durable single-block remap (one `remap` message = one commit)
# and the metadata bytes it writes, and the time to load 1M remaps when the table is created.
# The scale cases run over null_blk (no memory backing: writes are dropped) so that 1M remapped
# 4 KiB blocks cost no memory or disk: main is /dev/nullb0, and the spare is a linear device whose
# first and last 128 MiB (where both metadata copies live) are /dev/vda and whose middle (the
# data slots) is /dev/nullb1.
# suite: bench
# timeout: 3000
# kernel-args: null_blk.nr_devices=2 null_blk.gb=8 null_blk.irqmode=0 null_blk.queue_mode=2
. /scenarios/lib.sh
load_module
create r0 "0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
dmremap bench storm r0 --remaps 4096 --batch 1024 --start 8192 --out /tmp/storm.json || fail "dmremap bench storm"
dmsetup status r0
echo "@@BENCH storm $(cat /tmp/storm.json)"
check "remove r0" dmsetup remove r0

# Single remaps timed per number of existing remaps. A commit appends one journal block; the
# worker writes a checkpoint (the whole index) when the journal is half full, and the journal has
# only the record blocks the index does not use: at 1M remaps on this 1.1M-slot spare about 400,
# so a checkpoint of ~4,000 blocks follows every ~200 commits. Enough samples at every N to span
# several checkpoints, so the bytes per remap are the amortised cost.
SINGLES="0:1000 100000:1000 1000000:1000"
GROUP=4096            # remaps in the group-commit case (batches of 1024)
EDGE=262144           # sectors of real storage at each end of the spare (128 MiB)
SPARE_SECTORS=9000000 # ~4.3 GiB: 1.1M slots of 4 KiB plus both metadata copies
MAIN_BLOCKS=1100000
for d in /dev/nullb0 /dev/nullb1; do [ -b $d ] || fail "$d missing"; done
[ "$(sectors /dev/nullb0)" -ge $((MAIN_BLOCKS * 8)) ] || fail "nullb0 too small"
dd if=/dev/zero of=$SPARE bs=1M count=$((2 * EDGE / 2048)) oflag=direct status=none || fail "zero $SPARE"
create storm_spare "0 $EDGE linear $SPARE 0
$EDGE $((SPARE_SECTORS - 2 * EDGE)) linear /dev/nullb1 0
$((SPARE_SECTORS - EDGE)) $EDGE linear $SPARE $EDGE"
spare_stat=/sys/block/dm-$(dmsetup info -c --noheadings -o minor storm_spare | tr -d " ")/stat
[ -f "$spare_stat" ] || fail "no $spare_stat"
T="0 $((MAIN_BLOCKS * 8)) remap /dev/nullb0 0 /dev/mapper/storm_spare"
create s0 "$T"
have=0 k=0
for case in $SINGLES; do
	n=${case%%:*} singles=${case#*:}
	# Existing remaps: blocks 0..n-1, moved 100000 per message (each message commits every
	# 4096 blocks).
	t0=$(now_ms)
	while [ $have -lt "$n" ]; do
		c=$((n - have)); [ $c -gt 100000 ] && c=100000
		msg s0 remap $((have * 8)) $c >/dev/null || fail "remap $have +$c"
		have=$((have + c))
	done
	[ "$n" -gt 0 ] && info "$n remaps made in $(( $(now_ms) - t0 )) ms"
	# The measured blocks lie past the first 1M, 20000 blocks per case.
	dmremap bench storm s0 --remaps $GROUP --batch 1024 --single-remaps "$singles" \
		--start $(( (1000000 + k * 20000) * 8 )) --spare-stat "$spare_stat" --out /tmp/storm-$n.json ||
		fail "dmremap bench storm at $n remaps"
	echo "@@BENCH storm-at $n $(cat /tmp/storm-$n.json)"
	k=$((k + 1))
done
# Load time: re-create the device over the spare holding 1M+ remaps (/proc/uptime: 10 ms steps).
n=$(field s0 1)
check "remove s0" dmsetup remove s0
t0=$(now_ms)
create s0 "$T"
t1=$(now_ms)
assert_eq "remaps after re-create" "$(field s0 1)" "$n"
echo "@@BENCH storm-load {\"remaps\":$n,\"seconds\":$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1000 }')}"
check "remove s0" dmsetup remove s0
check "remove storm_spare" dmsetup remove storm_spare
