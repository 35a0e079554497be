# dmremapd against the real kernel and NVMe: a remap made with `dmremap remap` arrives as a
# remap_done event in the JSON-lines file and in /metrics; the NVMe source reports nvme0; the
# per-thread tuning that `dmremap tune --check --json` reads back matches `taskset -p` and
# `ionice -p`; a synthetic NVMe error log maps onto the remap device; SIGTERM under a storm of
# remaps loses no accepted event. The pending-block part runs once the kernel has the `pending`
# message (it checks `help`); until then it is skipped with a note.
# timeout: 900
. /scenarios/lib.sh
load_module
command -v dmremapd >/dev/null || fail "dmremapd binary missing from the initramfs"

OFF=2048                                   # main_offset of r0, sectors
LEN=$(( $(sectors "$MAIN") - OFF ))
check "dmremap create" dmremap create r0 --main "$MAIN" --spare "$SPARE" --offset "$OFF"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
assert_eq "r0 length" "$(sectors /dev/mapper/r0)" "$LEN"

STATE=/tmp/dmremapd-state
JSONL=/tmp/events.jsonl
mkdir -p "$STATE"
rm -f "$JSONL"
cat > /tmp/dmremapd.toml <<EOF
[log]
level = "debug"
[sinks.jsonl]
path = "$JSONL"
[sinks.prometheus]
listen = "127.0.0.1:9477"
[sources.nvme]
interval_s = 1
[scrub]
enabled = true
devices = ["$SPARE2"]
rate_mb_s = 20
state_dir = "$STATE"
[tune.events]
cpus = [1]
nice = -5
ioprio = "rt:4"
[tune.scrub]
cpus = [0]
nice = 10
ioprio = "idle"
EOF
check "check-config" dmremapd check-config /tmp/dmremapd.toml >/dev/null
# The metrics endpoint listens on loopback, which the initramfs does not bring up.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "cannot bring up lo"
dmremapd --config /tmp/dmremapd.toml 2>/tmp/dmremapd.log &
PID=$!
metrics() { wget -q -O - http://127.0.0.1:9477/metrics; }
i=0
until metrics >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/dmremapd.log; fail "no /metrics after 20 s"; }
	kill -0 $PID 2>/dev/null || { cat /tmp/dmremapd.log; fail "dmremapd exited"; }
	sleep 0.2
done
info "dmremapd $PID up"
# wait_for WHAT PATTERN: up to 30 s for a line matching PATTERN in the JSON-lines file.
wait_for() {
	i=0
	until grep -q "$2" "$JSONL" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 150 ] || { cat /tmp/dmremapd.log; tail -n 20 "$JSONL"; fail "no $1 event"; }
		sleep 0.2
	done
}

# 1. A remap made with the CLI, seen by the kernel source.
check "dmremap remap" dmremap remap r0 4096
wait_for remap_done '"source":"kernel","device":"r0","kind":"remap_done","fields":{"sector":4096,"sectors":8,'
grep '"kind":"remap_done"' "$JSONL"
m=$(metrics | grep '^dmremapd_events_total{' | grep 'source="kernel"' | grep 'device="r0"' | grep 'kind="remap_done"')
echo "$m"
assert_eq "remap_done in /metrics" "${m##* }" 1
check "dmremap unremap" dmremap unremap r0 4096
wait_for unremap_done '"device":"r0","kind":"unremap_done","fields":{"sector":4096,"sectors":8,'

# 2. The NVMe source scraped the real controller.
wait_for nvme_health '"source":"nvme","device":"nvme0","kind":"nvme_health","fields":{"changes":\["initial"\]'
metrics | grep -q '^dmremapd_nvme_available_spare_percent{device="nvme0"} ' || fail "no NVMe gauge in /metrics"

# 3. Tuning read back by `dmremap tune --check --json` against taskset and ionice, per thread.
wait_for scrub_progress '"source":"scrub","device":"/dev/vdb","kind":"scrub_progress"'
dmremap tune --check --pid $PID --json > /tmp/tune.json || fail "tune --check"
# One line per thread: tid name cpu-list ioprio-class level.
awk '
/"tid":/ { t = $2; gsub(/[^0-9]/, "", t) }
/"name":/ { n = $2; gsub(/[",]/, "", n) }
/"cpu_list":/ { c = $2; gsub(/[",]/, "", c) }
/"ioprio": \{/ { io = 1 }
io && /"class":/ { k = $2; gsub(/[",]/, "", k) }
io && /"level":/ { l = $2; gsub(/[^0-9]/, "", l); print t, n, c, k, l; io = 0 }
' /tmp/tune.json > /tmp/threads
cat /tmp/threads
[ "$(wc -l < /tmp/threads)" -ge 5 ] || fail "fewer threads than expected"
# mask LIST: a CPU list (0-1,3) as the hex mask taskset -p prints.
mask() {
	m=0
	for part in $(echo "$1" | tr , ' '); do
		j=${part%-*}
		while [ "$j" -le "${part#*-}" ]; do m=$((m | (1 << j))); j=$((j + 1)); done
	done
	printf %x "$m"
}
while read -r tid name list class level; do
	cpus=$(mask "$list")
	ts=$(taskset -p "$tid") || fail "taskset -p $tid"
	assert_eq "$name ($tid) CPUs: taskset" "${ts##*: }" "$cpus"
	io=$(ionice -p "$tid") || fail "ionice -p $tid"
	case $class in
	real_time) want="realtime: prio $level" ;;
	best_effort) want="best-effort: prio $level" ;;
	idle) want="idle" ;;
	none) want="none: prio $level" ;;
	*) fail "unknown class $class" ;;
	esac
	assert_eq "$name ($tid) I/O priority: ionice" "$io" "$want"
done < /tmp/threads
# And the profiles were applied: the kernel source on CPU 1 in rt:4, the scrubber on CPU 0 idle.
grep -q ' src-kernel 1 real_time 4$' /tmp/threads || fail "kernel source thread not tuned"
grep -q ' src-scrub 0 idle ' /tmp/threads || fail "scrub thread not tuned"

# 4. A synthetic NVMe error log (test-only path: QEMU's error log is always empty): one media
# error (SCT 2, SC 0x81) at the LBA of r0's sector 8000, one invalid-field error (skipped).
lbs=$(cat /sys/block/nvme0n1/queue/logical_block_size)
lba=$(( (OFF + 8000) * 512 / lbs ))
le() { v=$1; n=$2; while [ "$n" -gt 0 ]; do printf "\\$(printf %03o $((v & 255)))"; v=$((v >> 8)); n=$((n - 1)); done; }
entry() { # COUNT STATUS_FIELD LBA NSID
	le "$1" 8; le 1 2; le 7 2; le "$2" 2; le 65535 2; le "$3" 8; le "$4" 4
	head -c 36 /dev/zero
}
{ entry 2 $(( (2 << 9) | (0x81 << 1) | 1 )) "$lba" 1; entry 1 $(( (0 << 9) | (2 << 1) | 1 )) 5 1; } > /tmp/errlog.bin
assert_eq "error log size" "$(wc -c < /tmp/errlog.bin)" 128
out=$(dmremapd testing-inject-error-log --controller nvme0 --file /tmp/errlog.bin --dry-run) || fail "inject (dry run): $out"
echo "$out"
assert_eq "error log mapping" "$out" "{\"controller\":\"nvme0\",\"entries\":2,\"targets\":[{\"dm_name\":\"r0\",\"sector\":8000,\"sectors\":$((lbs / 512))}],\"marked\":0,\"errors\":[]}"

# 5. Pending blocks (kernel `pending` message: enabled automatically once `help` lists it).
if dmsetup message r0 0 help 2>/dev/null | grep -qw pending; then
	out=$(dmremapd testing-inject-error-log --controller nvme0 --file /tmp/errlog.bin) || fail "inject: $out"
	echo "$out"
	echo "$out" | grep -q '"marked":1,' || fail "error log block not marked"
	wait_for pending_marked '"device":"r0","kind":"pending_marked","fields":{"sector":8000,'
	assert_eq "pending in status" "$(field r0 2)" 1
else
	info "SKIP pending: the kernel module has no 'pending' message yet"
fi

# 6. SIGTERM under a remap storm: every accepted event is written, and the kernel events in the
# file are the kernel's own, in order, without a gap.
since=$(( $(dmremap events --json | tail -n1 | sed -n 's/^{"ts":"[^"]*","seq":\([0-9]*\),.*/\1/p') + 1 ))
( s=100000; k=0; while [ $k -lt 12 ]; do dmremap remap r0 $s --count 64 >/dev/null || exit 1; s=$((s + 64 * 8)); k=$((k + 1)); done ) &
STORM=$!
# Let the storm get going, then stop the daemon in the middle of it.
i=0
until [ "$(grep -c '"kind":"remap_done"' "$JSONL")" -ge 100 ]; do
	i=$((i + 1)); [ $i -lt 300 ] || fail "storm events not arriving"
	sleep 0.1
done
kill -TERM $PID
wait $PID; rc=$?
assert_eq "dmremapd exit code" "$rc" 0
wait $STORM || fail "remap storm failed"
cat /tmp/dmremapd.log | tail -n 5
line=$(grep 'stopped: ' /tmp/dmremapd.log) || fail "no drain report"
acc=$(echo "$line" | sed -n 's/.*stopped: \([0-9]*\) events accepted, \([0-9]*\) dropped, \([0-9]*\) delivered.*/\1/p')
dropped=$(echo "$line" | sed -n 's/.*stopped: \([0-9]*\) events accepted, \([0-9]*\) dropped, \([0-9]*\) delivered.*/\2/p')
deliv=$(echo "$line" | sed -n 's/.*stopped: \([0-9]*\) events accepted, \([0-9]*\) dropped, \([0-9]*\) delivered.*/\3/p')
lines=$(wc -l < "$JSONL")
info "accepted $acc dropped $dropped delivered $deliv lines $lines"
assert_eq "dropped" "$dropped" 0
assert_eq "delivered = accepted" "$deliv" "$acc"
assert_eq "lines in the file = accepted" "$lines" "$acc"
assert_eq "last seq" "$(tail -n1 "$JSONL" | sed -n 's/^{"ts":"[^"]*","seq":\([0-9]*\),.*/\1/p')" "$acc"
grep -q '"kind":"kernel_events_lost"' "$JSONL" && fail "kernel events lost"
# Sectors of the storm's remaps: in the file (in order) and in the kernel's ring.
dmremap events --since "$since" --json | grep "\"kind\":\"remap_done\",.*\"kernel\":{\"seq\":[0-9]*,\"dev\":\"$devt\"," \
	| sed -n 's/.*"fields":{"sector":\([0-9]*\),.*/\1/p' > /tmp/k.sectors
grep '"device":"r0","kind":"remap_done"' "$JSONL" | sed -n 's/.*"fields":{"sector":\([0-9]*\),.*/\1/p' \
	| awk '$1 >= 100000' > /tmp/d.sectors
nk=$(wc -l < /tmp/k.sectors); nd=$(wc -l < /tmp/d.sectors)
info "storm: kernel raised $nk remap events, the daemon wrote $nd before it stopped"
assert_eq "kernel remap events of the storm" "$nk" $((12 * 64))
[ "$nd" -ge 100 ] || fail "too few storm events written ($nd)"
head -n "$nd" /tmp/k.sectors > /tmp/k.prefix
cmp -s /tmp/k.prefix /tmp/d.sectors || { diff /tmp/k.prefix /tmp/d.sectors | head; fail "written kernel events are not the kernel's, in order"; }
dmremap remove r0 >/dev/null || dmsetup remove r0
info "daemon ok"
