# Events: remap/unremap, spare low (once) and exhausted, I/O errors from a device; each also bumps
# device-mapper's event counter so DM_DEV_WAIT waiters wake.
# timeout: 300
. /scenarios/lib.sh
load_module
last_seq() { dmremap events --json | tail -n1 | sed -n 's/.*"seq":\([0-9]*\).*/\1/p'; }
since=$(( $(last_seq) + 1 ))
[ "$since" -ge 1 ] || since=1
create r0 "0 1048576 remap $MAIN 0 $SPARE2 1 block_size:1048576"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
ev0=$(dmsetup info -c --noheadings -o events r0 | tr -d ' ')
msg r0 remap 4096 >/dev/null || fail remap
msg r0 unremap 4096 >/dev/null || fail unremap
out=$(dmremap events --since "$since" --json)
echo "$out"
echo "$out" | grep -q "\"type\":\"remap\",\"dev\":\"$devt\",\"sector\":4096,\"arg\":" || fail "no remap event for $devt sector 4096"
echo "$out" | grep -q "\"type\":\"unremap\",\"dev\":\"$devt\",\"sector\":4096," || fail "no unremap event"
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
assert_eq "spare_low events" "$(echo "$out" | grep -c '"type":"spare_low"')" 1
assert_eq "spare_exhausted events" "$(echo "$out" | grep -c '"type":"spare_exhausted"')" 1
echo "$out" | grep '"type":"spare_exhausted"' | grep -q "\"sector\":$((300 * 2048))," || fail "exhausted event sector"
dmsetup remove r0
# An unreadable block on main (dm-dust) shows up as an io_error event of the remap device.
create dust "0 262144 dust $MAIN 0 4096"
check "addbadblock" dmsetup message dust 0 addbadblock 10
check "enable dust" dmsetup message dust 0 enable
create r1 "0 262144 remap /dev/mapper/dust 0 $SPARE"
devt=$(dmsetup info -c --noheadings -o major,minor --separator : r1 | tr -d ' ')
since=$(( $(last_seq) + 1 ))
expect_fail "read of the bad block" dd if=/dev/mapper/r1 of=/dev/null bs=4096 skip=10 count=1 iflag=direct status=none
out=$(dmremap events --since "$since" --json)
echo "$out"
echo "$out" | grep -q "\"type\":\"io_error\",\"dev\":\"$devt\",\"sector\":80," || fail "no io_error event at sector 80"
assert_eq "read errors in status" "$(field r1 4)" 1
dmsetup remove r1
dmsetup remove dust
info "events ok"
