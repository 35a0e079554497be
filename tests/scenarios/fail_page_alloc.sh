# Page allocation failures (fail_page_alloc: every order, sleeping GFP_NOIO/GFP_KERNEL allocations
# included, user pages excluded; task filter: the kernel's unbound workers, where the target's
# worker heals) while writes fail on main and a remap storm runs: a write heals or fails with EIO,
# a message moves its blocks or fails cleanly; the counters match the index and the events;
# acknowledged data reads back; nothing leaks (kmemleak); once the failures stop the device works
# and re-creates with every durable remap. The message senders are not filtered: device-mapper's
# ioctl buffer (dm-ioctl copy_params: kvmalloc without __GFP_NOWARN) falls back to vmalloc, whose
# failure prints a page allocation warning with a stack trace before the target is reached
# (alloc_fail covers the message path with failslab on the index's nodes). The worker's own
# allocations come from slab caches that seldom need a new page: a run fails only a few page
# allocations of the unbound workers (printed; 5 and 10 in two runs, none met by a heal), and a
# heal that meets one fails with EIO.
# suite: full
# timeout: 360
# kernel-args: kmemleak=on
. /scenarios/lib.sh
load_module
F=/sys/kernel/debug/fail_page_alloc
[ -d $F ] || fail "no $F (CONFIG_FAIL_PAGE_ALLOC, debugfs)"
check "blank spare" blank $SPARE
T="0 16384 remap $MAIN 0 $SPARE"
ev0=$(ev_seq)
create r0 "$T"
random_file /tmp/model 16384
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
workers=
stop() {
	echo 0 > $F/probability
	for p in $workers; do echo 0 > /proc/$p/make-it-fail 2>/dev/null; done
}
trap 'stop; host_do clear-faults nvme0 >/dev/null 2>&1' EXIT
# Writes to every 64th 4 KiB block of the first 4 MiB fail on main: the worker heals them.
check "main write faults" host_do faults nvme0 write 0 512 16

# The harness fails a scenario on a stack trace: no report per injected failure.
echo 0 > $F/verbose
# Sleeping allocations (GFP_NOIO, GFP_KERNEL) and order 0 are where the target allocates; user
# pages (__GFP_HIGHMEM) are left alone, so the message senders' own page faults succeed.
echo N > $F/ignore-gfp-wait
echo Y > $F/ignore-gfp-highmem
echo 0 > $F/min-order
echo Y > $F/task-filter
echo 1 > $F/interval
echo 0 > $F/space
# A budget large enough never to run out: what is left of it counts the injected failures.
BUDGET=1000000
echo $BUDGET > $F/times
workers=$(unbound_kworkers)
[ -n "$workers" ] || fail "no unbound kworkers"
for p in $workers; do echo 1 > /proc/$p/make-it-fail 2>/dev/null; done
echo 50 > $F/probability

info "remap storm while the worker's page allocations fail"
(
	ok=0 part=0 nomem=0 other=0
	for i in $(seq 0 11); do
		s=$((8192 + i * 512))
		out=$(dmsetup message r0 0 remap $s 32 2>&1)
		case "$out" in
		"remapped "*"then failed: error -12") part=$((part + 1)) ;;
		"remapped "*"then failed"*) other=$((other + 1)); echo "remap $s 32: $out" ;;
		"remapped "*) ok=$((ok + 1)) ;;
		*"Cannot allocate memory"*) nomem=$((nomem + 1)) ;;
		*) other=$((other + 1)); echo "remap $s 32: $out" ;;
		esac
	done
	echo "storm: ok=$ok partial=$part enomem=$nomem other=$other" > /tmp/storm
) &
spid=$!
# Writes meanwhile: the failing ones go to the worker, whose allocations fail too.
write_failing_blocks /dev/mapper/r0 /tmp/model
wait $spid
stop
injected=$((BUDGET - $(cat $F/times)))
cat /tmp/storm
info "writes to failing blocks: healed=$wok eio=$weio; page allocations failed: $injected"
grep -q "other=0" /tmp/storm || fail "a message failed with something else than ENOMEM"
[ "$injected" -gt 0 ] || fail "no page allocation was failed"

info "counters match the index and the events"
list=$(msg r0 list 0 100000)
nrem=$(echo "$list" | grep -c " remapped$")
npend=$(echo "$list" | grep -c " pending$")
assert_eq "remapped = remapped entries listed" "$(field r0 1)" "$nrem"
assert_eq "pending = pending entries listed" "$(field r0 2)" "$npend"
assert_eq "write errors (each write to a failing block failed once on main)" "$(field r0 5)" 16
msg r0 stats | grep -q "^healed_writes=$wok$" || fail "healed_writes is not $wok: $(msg r0 stats)"
assert_eq "remap events" "$(ev_count "$ev0" remap_done)" "$nrem"
used=$(field r0 3 | cut -d/ -f1)
[ "$used" -ge "$nrem" ] || fail "spare_used $used < remapped $nrem"

info "after the failures: reads, writes, remaps work; remaps survive re-create"
# The faults also fail reads of those sectors: clear them, then the blocks whose write failed
# (not acknowledged) may hold either version: the model takes what the device holds there.
check "clear main faults" host_do clear-faults nvme0
for i in $failed; do
	dd if=/dev/mapper/r0 of=/tmp/model bs=4096 count=1 skip=$((i * 64)) seek=$((i * 64)) iflag=direct conv=notrunc status=none ||
		fail "block $((i * 64)) unreadable after the faults were cleared"
done
assert_eq "acknowledged data" "$(sha_range /dev/mapper/r0 0 16384)" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remap after the failures" msg r0 remap 8 64
check "write after the failures" write_at /dev/mapper/r0 /tmp/model 65536 65536
timed_ms 10000 "suspend" dmsetup suspend r0
timed_ms 10000 "resume" dmsetup resume r0
assert_eq "state" "$(field r0 7)" active
before=$(msg r0 list 0 100000)
timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(msg r0 list 0 100000)" "$before"
assert_eq "no slot leaked" "$(field r0 3 | cut -d/ -f1)" "$(echo "$before" | grep -c " remapped$")"
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 0 16384)" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remove" dmsetup remove r0
check "rmmod" rmmod dm_remap
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
echo "fail_page_alloc: ok"
