# The demo: a remap device over an NVMe main disk and a virtio spare, in use.
# suite: demo
# timeout: 600
. /scenarios/lib.sh
say() { echo; echo "==> $*"; }
say "loading dm_remap"
load_module
dmsetup targets | grep remap
say "creating /dev/mapper/demo: main $MAIN (NVMe), spare $SPARE (virtio)"
create demo "0 $(( 512 * 2048 )) remap $MAIN 0 $SPARE 1 block_size:4096"
dmsetup table demo
echo "status (remapped pending spare_used/total read_err write_err meta_seq state):"
dmsetup status demo
printf 'message ping -> '; dmsetup message demo 0 ping
say "fio: 4K random writes with crc32c verification"
fio --name=demo --filename=/dev/mapper/demo --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bs=4k --size=32M --verify=crc32c --verify_fatal=1 --randseed=7 \
	| grep -E 'IOPS|verify|err=' | head -5 || fail "fio failed"
say "moving blocks to the spare while the data stays put"
dmsetup message demo 0 remap 8 4
dmsetup message demo 0 remap 100000
echo "remapped blocks (sector block slot state):"
dmsetup message demo 0 list
dmsetup status demo
fio --name=demo --filename=/dev/mapper/demo --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bs=4k --size=32M --verify=crc32c --verify_only=1 --randseed=7 \
	| grep -E 'err=' | head -1 || fail "data changed after remap"
echo "fio re-verified the data written before the remaps: intact"
dmsetup message demo 0 unremap 100000
dmsetup message demo 0 stats | tr '\n' ' '; echo
say "in-kernel microbenchmarks (ns per operation, this VM is emulated: expect ~10x native)"
dmremap bench kernel --iterations 50000 --entries 0,100000 --ops alloc,lookup
say "ext4 on the remap device"
mkfs.ext4 -q -F /dev/mapper/demo && mkdir -p /mnt/demo && mount /dev/mapper/demo /mnt/demo || fail "mkfs/mount"
dd if=/dev/urandom of=/mnt/demo/payload bs=1M count=16 status=none
sha256sum /mnt/demo/payload
umount /mnt/demo
e2fsck -f -n /dev/mapper/demo >/dev/null && echo "e2fsck: clean" || fail "e2fsck"
dmsetup status demo
say "the remaps are on the spare's metadata: remove the device, create it again"
dmsetup remove demo
dmremap inspect $SPARE | head -4
create demo "0 $(( 512 * 2048 )) remap $MAIN 0 $SPARE 1 block_size:4096"
dmsetup status demo
dmsetup message demo 0 list
say "a write error on main is healed on the spare (QEMU blkdebug fails writes to sector 200000)"
host_do fault nvme0 write 200000 >/dev/null || fail "fault injection"
dd if=/dev/urandom of=/tmp/blk bs=4096 count=1 status=none
dd if=/tmp/blk of=/dev/mapper/demo bs=4096 seek=25000 oflag=direct conv=notrunc status=none && echo "write: ok"
[ "$(sha_range /dev/mapper/demo 200000 8)" = "$(sha256sum < /tmp/blk | cut -d' ' -f1)" ] && echo "read back: identical" || fail "healed data"
dmsetup status demo
host_do clear-faults nvme0 >/dev/null
dmsetup remove demo
say "demo finished"
