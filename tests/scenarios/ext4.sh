# mkfs.ext4, mount, write files, umount, e2fsck clean, files intact after remount.
# timeout: 600
. /scenarios/lib.sh
load_module
create r0 "0 $(( 512 * 2048 )) remap $MAIN 0 $SPARE"
check "mkfs.ext4" mkfs.ext4 -q -F /dev/mapper/r0
mkdir -p /mnt/r0
check "mount" mount -t ext4 /dev/mapper/r0 /mnt/r0
for i in 1 2 3 4 5 6 7 8; do
	dd if=/dev/urandom of=/mnt/r0/file$i bs=64k count=$((i * 8)) status=none || fail "write file$i"
done
mkdir -p /mnt/r0/dir/sub && echo hello > /mnt/r0/dir/sub/small
(cd /mnt/r0 && find . -type f | sort | xargs sha256sum) > /tmp/sums
check "sync" sync
check "umount" umount /mnt/r0
check "e2fsck clean" e2fsck -f -n /dev/mapper/r0
check "mount again" mount -t ext4 /dev/mapper/r0 /mnt/r0
(cd /mnt/r0 && sha256sum -c /tmp/sums >/dev/null) || fail "file checksums differ after remount"
check "umount" umount /mnt/r0
check "remove" dmsetup remove r0
info "ext4 ok"
