# Write-zeroes and discards on a dying main. The target does not advertise write-zeroes, so the
# block layer zeroes a range with ordinary writes, which heal like any write. A discard over a
# failing block may fail (it is passed through) but never changes the index.
# timeout: 180
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
check "blank spare" blank $SPARE
T="0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
create r0 "$T"
q=$(dm_sysfs r0)/queue
assert_eq "write-zeroes not advertised" "$(cat $q/write_zeroes_max_bytes)" 0
random_file /tmp/d 64
check "data" dd if=/tmp/d of=/dev/mapper/r0 bs=32K seek=128 count=1 oflag=direct conv=notrunc status=none
check "fault" host_do fault nvme0 write 8200
check "zero 32 KiB over the failing block" /usr/sbin/blkdiscard -z -o $((8192 * 512)) -l 32768 /dev/mapper/r0
assert_eq "remapped" "$(field r0 1)" 1
zeros=$(dd if=/dev/zero bs=512 count=64 status=none | sha256sum | cut -d' ' -f1)
assert_eq "zeroed" "$(sha_range /dev/mapper/r0 8192 64)" "$zeros"
msg r0 stats | grep -q "^healed_writes=[1-9]" || fail "healed_writes: $(msg r0 stats)"
check "clear faults" host_do clear-faults nvme0

if [ "$(cat $q/discard_max_bytes)" -gt 0 ]; then
	check "fault" host_do fault nvme0 write 16400
	if /usr/sbin/blkdiscard -o $((16384 * 512)) -l 32768 /dev/mapper/r0; then
		info "discard over the failing block succeeded"
	else
		info "discard over the failing block failed (passed through)"
	fi
	assert_eq "remapped after the discard" "$(field r0 1)" 1
	assert_eq "pending after the discard" "$(field r0 2)" 0
	check "clear faults" host_do clear-faults nvme0
else
	info "no discard support on this stack: discard cell skipped"
fi

timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remap after re-create" "$(field r0 1)" 1
assert_eq "zeroed after re-create" "$(sha_range /dev/mapper/r0 8192 64)" "$zeros"
check "remove" dmsetup remove r0
echo "fault_zeroes: ok"
