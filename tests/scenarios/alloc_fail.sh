# Allocation failures (failslab on the remap index's nodes, task filter: the message sender and
# the kernel's unbound workers, where the target's worker runs) during a remap storm and healed
# write errors: messages fail cleanly (ENOMEM), bios succeed or fail (EIO), acknowledged data
# reads back, nothing leaks (kmemleak), and the device works and re-creates with every durable
# remap once the failures stop.
# timeout: 300
# kernel-args: kmemleak=on
. /scenarios/lib.sh
load_module
F=/sys/kernel/debug/failslab
[ -d $F ] || fail "no $F (CONFIG_FAILSLAB, debugfs)"
echo 1 > /sys/kernel/slab/radix_tree_node/failslab || fail "cannot flag radix_tree_node for failslab"
T="0 32768 remap $MAIN 0 $SPARE"
create r0 "$T"
random_file /tmp/model 32768
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
trap 'host_do clear-faults nvme0 >/dev/null 2>&1; echo 0 > $F/probability' EXIT
# Writes to every 64th 4 KiB block of the first 4 MiB fail on main: the worker heals them.
check "main write faults" host_do faults nvme0 write 0 512 16

stop() { echo 0 > $F/probability; for p in $workers; do echo 0 > /proc/$p/make-it-fail 2>/dev/null; done; }
echo N > $F/ignore-gfp-wait
echo Y > $F/cache-filter
echo Y > $F/task-filter
echo 0 > $F/verbose
echo -1 > $F/times
echo 0 > $F/space
echo 1 > $F/interval
workers=$(unbound_kworkers)
[ -n "$workers" ] || fail "no unbound kworkers"
for p in $workers; do echo 1 > /proc/$p/make-it-fail 2>/dev/null; done
echo 30 > $F/probability

info "remap storm with failing allocations"
(
	echo 1 > /proc/self/make-it-fail
	ok=0 nomem=0 other=0
	for i in $(seq 0 19); do
		s=$((8192 + i * 1024))
		if out=$(dmsetup message r0 0 remap $s 32 2>&1); then ok=$((ok + 1));
		else case "$out" in *"Cannot allocate memory"*) nomem=$((nomem + 1)) ;; *) other=$((other + 1)); echo "$out" ;; esac; fi
	done
	echo "storm: ok=$ok enomem=$nomem other=$other" > /tmp/storm
) &
spid=$!
# Writes meanwhile: the failing ones go to the worker, whose node allocations fail too.
write_failing_blocks /dev/mapper/r0 /tmp/model
wait $spid
stop
cat /tmp/storm
info "writes to failing blocks: ok=$wok eio=$weio; failslab: $(dmsetup status r0)"
grep -q "other=0" /tmp/storm || fail "a message failed with something else than ENOMEM"

info "after the failures: reads, writes, remaps work; remaps survive re-create"
# The faults also fail reads of those sectors: clear them, then the blocks whose write failed
# (not acknowledged) may hold either version: the model takes what the device holds there.
check "clear main faults" host_do clear-faults nvme0
for i in $failed; do
	dd if=/dev/mapper/r0 of=/tmp/model bs=4096 count=1 skip=$((i * 64)) seek=$((i * 64)) iflag=direct conv=notrunc status=none ||
		fail "block $((i * 64)) unreadable after the faults were cleared"
done
assert_eq "acknowledged data" "$(sha_range /dev/mapper/r0 0 32768)" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remap after the failures" msg r0 remap 8 64
check "write after the failures" write_at /dev/mapper/r0 /tmp/model 65536 65536
state=$(field r0 7)
[ "$state" = active ] || [ "$state" = metadata_error ] || fail "state $state"
before=$(msg r0 list 0 100000)
check "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(msg r0 list 0 100000)" "$before"
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 0 32768)" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remove" dmsetup remove r0
check "rmmod" rmmod dm_remap
echo 0 > /sys/kernel/slab/radix_tree_node/failslab
[ -w /sys/kernel/debug/kmemleak ] || fail "kmemleak not available"
sleep 6
echo scan > /sys/kernel/debug/kmemleak
sleep 1
echo scan > /sys/kernel/debug/kmemleak
leaks=$(cat /sys/kernel/debug/kmemleak)
if echo "$leaks" | grep -qE 'dm_remap|remap'; then
	echo "$leaks" | sed 's/^/  kmemleak: /' | head -60
	fail "kmemleak reports leaks from the remap target"
fi
check "insmod" insmod "$MODULE"
info "allocation failures: ok"
