# ext4 on a remap device whose main disk develops write errors during a workload: every write
# is healed, e2fsck finds the file system clean and every fsynced file reads back intact, also
# after the device is removed and created again.
# timeout: 900
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
T="0 $(( 768 * 2048 )) remap $MAIN 0 $SPARE"
create r0 "$T"
check "mkfs.ext4" mkfs.ext4 -q -F /dev/mapper/r0
mkdir -p /mnt/r0
check "mount" mount -t ext4 /dev/mapper/r0 /mnt/r0
: > /tmp/sums
n=0
for i in $(seq 1 48); do
	if [ "$i" = 8 ]; then
		# Bad blocks appear: a failing sector every 4 MiB over the whole device.
		check "inject" host_do faults nvme0 write 2048 8192 192
		info "faults injected"
	fi
	dd if=/dev/urandom of=/mnt/r0/f$i bs=64k count=16 conv=fsync status=none || fail "write f$i"
	(cd /mnt/r0 && sha256sum f$i) >> /tmp/sums
	n=$((n + 1))
done
check "sync" sync
# Counted after umount: its superblock and journal writes can still hit a failing sector.
check "umount" umount /mnt/r0
remapped=$(field r0 1)
info "$n files fsynced; $remapped blocks remapped; status: $(dmsetup status r0)"
[ "$remapped" -gt 0 ] || fail "no write hit a failing sector"
assert_eq "no pending blocks" "$(field r0 2)" 0
check "e2fsck clean" e2fsck -f -n /dev/mapper/r0
check "remove" dmsetup remove r0
check "clear faults" host_do clear-faults nvme0
create r0 "$T"
assert_eq "remaps after re-create" "$(field r0 1)" "$remapped"
check "mount again" mount -t ext4 /dev/mapper/r0 /mnt/r0
(cd /mnt/r0 && sha256sum -c /tmp/sums >/dev/null) || fail "fsynced files differ"
check "umount" umount /mnt/r0
check "e2fsck clean after re-create" e2fsck -f -n /dev/mapper/r0
echo "fault_ext4: ok"
