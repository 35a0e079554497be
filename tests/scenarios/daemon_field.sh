# dmremapd in the field: per-device metrics read from the target's status at scrape time (there
# before any event, right after a restart), device_info/build_info/process_start_time_seconds;
# the kept event cursor: events raised while the daemon is down are reported after its restart,
# none twice; critical events logged at warning or above; idle wake-ups per second of the
# daemon (all threads' context switches over 10 s), which the blocking poll() keeps near zero.
# timeout: 300
. /scenarios/lib.sh
load_module
command -v dmremapd >/dev/null || fail "dmremapd binary missing from the initramfs"
blank $SPARE
check "dmremap create" dmremap create r0 --main "$MAIN" --spare "$SPARE"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "cannot bring up lo"
ST=/tmp/field-state
JSONL=/tmp/field-events.jsonl
mkdir -p $ST
rm -f $JSONL
cat > /tmp/field.toml <<EOF
[sinks.jsonl]
path = "$JSONL"
[sinks.prometheus]
listen = "127.0.0.1:9477"
[sources.kernel]
cursor_file = "$ST/kernel-events.cursor"
[sources.nvme]
error_log_state = "$ST/nvme-error-log.json"
[tune]
enabled = false
EOF
metrics() { wget -q -O - http://127.0.0.1:9477/metrics; }
start() {
	dmremapd --config /tmp/field.toml 2>>/tmp/field.log &
	PID=$!
	i=0
	until metrics >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/field.log; fail "no /metrics after 20 s"; }
		kill -0 $PID 2>/dev/null || { cat /tmp/field.log; fail "dmremapd exited"; }
		sleep 0.2
	done
}
stop() { kill -TERM $PID; wait $PID || fail "dmremapd exit status $?"; }
count() { grep -c "\"kind\":\"$1\"" $JSONL 2>/dev/null || true; }
wait_count() { # KIND N: up to 20 s for N events of KIND
	i=0
	while [ "$(count $1)" -lt "$2" ]; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "$1: $(count $1) events, want $2"
		sleep 0.2
	done
}
# Sum of the context switches of every thread of $PID.
switches() { cat /proc/$PID/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }

start
info "metrics from the target status before any event"
m=$(metrics)
echo "$m" | grep -E '^(dmremapd_(device_info|remapped_blocks|pending_blocks|spare_used_blocks|spare_total_blocks|read_errors_total|write_errors_total|device_state|build_info|nvme_media_errors_total)|process_start_time_seconds)' | sort | head -40
echo "$m" | grep -q '^dmremapd_remapped_blocks{device="r0"} 0$' || fail "no remapped_blocks gauge for r0"
total=$(dmsetup status r0 | awk '{ split($6, a, "/"); print a[2] }')
echo "$m" | grep -q "^dmremapd_spare_total_blocks{device=\"r0\"} $total\$" || fail "spare_total_blocks is not $total"
echo "$m" | grep -q '^dmremapd_device_state{device="r0",state="active"} 1$' || fail "no state=active"
echo "$m" | grep -q '^dmremapd_device_info{dm="r0",main="nvme0n1",spare="vda",controller="nvme0"} 1$' || fail "no device_info"
echo "$m" | grep -q '^dmremapd_build_info{version="' || fail "no build_info"
echo "$m" | grep -q '^process_start_time_seconds ' || fail "no process_start_time_seconds"

info "idle wake-ups"
sleep 3
a=$(switches)
sleep 10
b=$(switches)
rate=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 10 }')
echo "IDLE_WAKEUPS_PER_S=$rate (context switches of all dmremapd threads over 10 s)"

info "a remap wakes the reader at once"
check "remap 800" dmremap remap r0 800 --count 3
wait_count remap_done 3
m=$(metrics)
echo "$m" | grep -q '^dmremapd_remapped_blocks{device="r0"} 3$' || fail "remapped_blocks not 3: $(echo "$m" | grep remapped_blocks)"
grep -q . $ST/kernel-events.cursor || fail "no cursor kept"

info "events raised while the daemon is down are reported after a restart, none twice"
stop
check "remap 4000 (daemon down)" dmremap remap r0 4000 --count 2
start
wait_count remap_done 5
sleep 1
assert_eq "remap_done events after the restart" "$(count remap_done)" 5
# Critical events reach the log at warning priority (here stderr without a journal).
check "pending" dmremap message r0 pending 8000 1
i=0
until grep -q 'warning: kernel r0: pending_marked' /tmp/field.log; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/field.log; fail "pending_marked not logged as a warning"; }
	sleep 0.2
done
stop
check "remove" dmremap remove r0
# Checked last, so the figure above is printed in either case.
awk -v r="$rate" 'BEGIN { exit !(r < 5) }' || fail "idle wake-ups $rate/s (want < 5)"
info "ok"
