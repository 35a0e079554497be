# Events: remap/unremap, spare low (once) and exhausted, I/O errors from a device; each also bumps
# device-mapper's event counter so DM_DEV_WAIT waiters wake. read() and poll() on /dev/dm-remap:
# whole records, a blocking read and a poller woken by a message and by an I/O completion,
# `--new`, and the overflow record of a reader that fell behind the ring.
# timeout: 400
. /scenarios/lib.sh

# wait_for FILE PATTERN DESC: FILE gets a line matching PATTERN (grep -E) within 10 s.
wait_for() {
	_i=0
	until grep -qE "$2" "$1" 2>/dev/null; do
		_i=$((_i + 1)); [ $_i -lt 100 ] || { cat "$1"; fail "$3: no line /$2/ in $1"; }
		sleep 0.1
	done
}
# gone PID DESC: the process ends within 10 s.
gone() {
	_i=0
	while kill -0 "$1" 2>/dev/null; do
		_i=$((_i + 1)); [ $_i -lt 100 ] || fail "$2: still running"
		sleep 0.1
	done
}
# u64 FILE OFFSET / u32 FILE OFFSET: a little-endian integer of a record file.
u64() { od -An -tu8 -j"$2" -N8 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j"$2" -N4 "$1" | tr -d ' '; }

# --- read() and poll(), from a freshly loaded module: empty ring, sequence numbers from 1.
if module_loaded; then check "rmmod (no devices left by earlier scenarios)" rmmod dm_remap; fi
load_module
out=$(dd if=/dev/dm-remap of=/dev/null bs=47 count=1 2>&1) && fail "a 47-byte read() succeeded"
echo "$out" | grep -q "Invalid argument" || fail "47-byte read(): $out"
assert_eq "nothing to read (non-blocking)" "$(dmremap events --json)" ""
# Nothing raised yet: a blocking read() waits, and so does `events --follow` (in poll()).
dd if=/dev/dm-remap of=/tmp/rec bs=96 count=1 status=none &
rd=$!
dmremap events --follow --json > /tmp/follow.json &
fw=$!
sleep 2
kill -0 $rd 2>/dev/null || fail "read() of an empty ring returned"
kill -0 $fw 2>/dev/null || fail "events --follow exited"
[ -s /tmp/follow.json ] && fail "events --follow printed before any event"
create r0 "0 1048576 remap $MAIN 0 $SPARE2 1 block_size:1048576"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
msg r0 remap 4096 >/dev/null || fail remap
gone $rd "blocking read() after an event"
assert_eq "read() returns one whole record" "$(stat -c %s /tmp/rec)" 48
assert_eq "record seq" "$(u64 /tmp/rec 0)" 1
assert_eq "record type (DMR_EV_REMAP)" "$(u32 /tmp/rec 16)" 1
assert_eq "record sector" "$(u64 /tmp/rec 24)" 4096
assert_eq "record dev" "$(($(u32 /tmp/rec 20) >> 20)):$(($(u32 /tmp/rec 20) & 1048575))" "$devt"
wait_for /tmp/follow.json "\"seq\":1,.*\"kind\":\"remap_done\",\"fields\":\\{\"sector\":4096,.*\"kernel\":\\{\"seq\":1,\"dev\":\"$devt\"," "events --follow woken by a message"
# --new: only what is raised after it started.
dmremap events --follow --new --json > /tmp/new.json &
nw=$!
sleep 2
msg r0 unremap 4096 >/dev/null || fail unremap
wait_for /tmp/new.json '"kind":"unremap_done"' "events --follow --new"
wait_for /tmp/follow.json '"seq":2,.*"kind":"unremap_done"' "events --follow, second event"
kill $fw $nw; wait $fw $nw 2>/dev/null
assert_eq "--new skipped the older event" "$(grep -c . /tmp/new.json)" 1
grep -q '"seq":2,' /tmp/new.json || fail "--new: $(cat /tmp/new.json)"
expect_fail "--since in the future" dmremap events --since 1000000
dmsetup remove r0
# A reader that fell behind: 1100 more events overflow the 1024-entry ring; reading from seq 1
# starts with one overflow record, then sequence numbers continue.
create ov "0 262144 remap $MAIN 0 $SPARE"
msg ov remap 0 1100 >/dev/null || fail "remap 1100 blocks"
dmremap events --since 1 --json > /tmp/all.json 2>/tmp/all.err || fail "events --since 1"
head -1 /tmp/all.json | grep -q '^{"ts":"[^"]*","seq":1,"source":"kernel","device":"dm-remap","kind":"kernel_events_lost","fields":{"count":[0-9]*},"kernel":{"seq":1,"dev":"0:0","arg":[0-9]*}}$' ||
	fail "first record is not an overflow record: $(head -1 /tmp/all.json)"
lost=$(head -1 /tmp/all.json | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
assert_eq "lost events" "$lost" $((1102 - 1024))
sed -n 2p /tmp/all.json | grep -q "^{\"ts\":\"[^\"]*\",\"seq\":$((1 + lost))," || fail "after the overflow record: $(sed -n 2p /tmp/all.json)"
assert_eq "records after the overflow" "$(($(wc -l < /tmp/all.json) - 1))" 1024
grep -q "^dmremap: events 1..$lost were overwritten before they could be read" /tmp/all.err || fail "overflow message: $(cat /tmp/all.err)"
dmsetup remove ov

# --- The event types and the DM event counter.
last_seq() { dmremap events --json | tail -n1 | sed -n 's/^{"ts":"[^"]*","seq":\([0-9]*\),.*/\1/p'; }
since=$(( $(last_seq) + 1 ))
[ "$since" -ge 1 ] || since=1
create r0 "0 1048576 remap $MAIN 0 $SPARE2 1 block_size:1048576"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
ev0=$(dmsetup info -c --noheadings -o events r0 | tr -d ' ')
msg r0 remap 4096 >/dev/null || fail remap
msg r0 unremap 4096 >/dev/null || fail unremap
out=$(dmremap events --since "$since" --json)
echo "$out"
echo "$out" | grep -q "\"device\":\"r0\",\"kind\":\"remap_done\",\"fields\":{\"sector\":4096,.*\"kernel\":{\"seq\":[0-9]*,\"dev\":\"$devt\",\"arg\":" || fail "no remap event for $devt sector 4096"
echo "$out" | grep -q "\"device\":\"r0\",\"kind\":\"unremap_done\",\"fields\":{\"sector\":4096,.*\"dev\":\"$devt\"," || fail "no unremap event"
# The device-mapper event counter moved (raised from a work item: give it a moment).
i=0
while [ "$(dmsetup info -c --noheadings -o events r0 | tr -d ' ')" -le "$ev0" ]; do
	i=$((i + 1)); [ $i -lt 50 ] || fail "DM event counter did not move"; sleep 0.1
done
timeout 10 dmsetup wait r0 "$ev0" || fail "dmsetup wait did not return for a past event"
# About 256 slots of 1 MiB: filling past 90 % raises spare_low once; one more block than slots
# raises exhausted.
total=$(field r0 3 | cut -d/ -f2)
since=$(( $(last_seq) + 1 ))
msg r0 remap 0 200 >/dev/null || fail "fill to 200"
msg r0 remap $((200 * 2048)) $((total - 200)) >/dev/null || fail "fill to $total"
expect_fail "remap with a full spare" msg r0 remap $((300 * 2048))
out=$(dmremap events --since "$since" --json)
assert_eq "spare_low events" "$(echo "$out" | grep -c '"kind":"spare_low"')" 1
assert_eq "spare_exhausted events" "$(echo "$out" | grep -c '"kind":"spare_exhausted"')" 1
echo "$out" | grep '"kind":"spare_exhausted"' | grep -q "\"fields\":{\"sector\":$((300 * 2048))," || fail "exhausted event sector"
dmsetup remove r0
have_target dust || { info "SKIPPED dm-dust part: kernel $(uname -r) has no dust target"; exit 0; }
# An unreadable block on main (dm-dust) shows up as an io_error event of the remap device.
create dust "0 262144 dust $MAIN 0 4096"
check "addbadblock" dmsetup message dust 0 addbadblock 10
check "enable dust" dmsetup message dust 0 enable
check "blank spare" blank $SPARE
create r1 "0 262144 remap /dev/mapper/dust 0 $SPARE"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r1 | tr -d ' ')
since=$(( $(last_seq) + 1 ))
# The io_error event is raised in the bio's completion: it wakes a poller all the same.
dmremap events --follow --new --json > /tmp/io.json &
iw=$!
sleep 2
expect_fail "read of the bad block" dd if=/dev/mapper/r1 of=/dev/null bs=4096 skip=10 count=1 iflag=direct status=none
wait_for /tmp/io.json "\"kind\":\"io_error\",\"fields\":\\{[^}]*\"sector\":80,.*\"dev\":\"$devt\"," "poller woken from I/O completion"
kill $iw; wait $iw 2>/dev/null
out=$(dmremap events --since "$since" --json)
echo "$out"
echo "$out" | grep -q "\"kind\":\"io_error\",\"fields\":{[^}]*\"sector\":80,.*\"dev\":\"$devt\"," || fail "no io_error event at sector 80"
assert_eq "read errors in status" "$(field r1 4)" 1
dmsetup remove r1
dmsetup remove dust
info "events ok"
