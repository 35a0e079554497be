# fio 4K random read/write IOPS of dm-remap vs dm-linear over the same device, interleaved and
# repeated, with 0 and 100K remaps. DISKS=nullb runs over null_blk (the target's own CPU cost;
# meant for an icount VM, where guest time is instructions executed), DISKS=nvme over emulated
# NVMe with a virtio spare (end to end, MTTCG). bench_io_nullb.sh / bench_io_nvme.sh set DISKS.
# suite: lib
# timeout: 3600
# kernel-args: null_blk.nr_devices=2 null_blk.gb=1 null_blk.irqmode=0 null_blk.queue_mode=2
. /scenarios/lib.sh
load_module
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-3}
DISKS=${DISKS:-nullb nvme}
SIZE_SECTORS=$((1024 * 2048))   # 1 GiB
fio_iops() { # DEV RW -> IOPS
	fio --name=b --filename="$1" --direct=1 --ioengine=libaio --iodepth=16 --rw="$2" --bs=4k \
		--time_based=1 --runtime="$RUNTIME" --randrepeat=1 --randseed=1234 --norandommap=1 \
		--size=$((SIZE_SECTORS / 2048))M --output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' -v rw="$2" '{ if (rw == "randread") print $8; else print $49 }'
}
add_remaps() { # DEV: 100 runs of 1000 blocks spread over the device
	for r in $(seq 0 99); do
		msg "$1" remap $(( (r * 2593) % 250 * 8192 )) 1000 >/dev/null || fail "remap run $r on $1"
	done
}
results=""
for disk in $DISKS; do
	if [ $disk = nullb ]; then main=/dev/nullb0 spare=/dev/nullb1; else main=$MAIN spare=$SPARE; fi
	[ -b "$main" ] || fail "$main missing"
	for remaps in 0 100000; do
		dmsetup remove_all
		create lin "0 $SIZE_SECTORS linear $main 0"
		create rmp "0 $SIZE_SECTORS remap $main 0 $spare"
		[ "$remaps" -gt 0 ] && add_remaps rmp
		n=$(field rmp 1)
		for rw in randread randwrite; do
			lin_all="" rmp_all=""
			for rep in $(seq 1 "$REPS"); do
				# Alternate which device runs first so warm-up favours neither.
				if [ $((rep % 2)) -eq 1 ]; then
					a=$(fio_iops /dev/mapper/lin $rw); b=$(fio_iops /dev/mapper/rmp $rw)
				else
					b=$(fio_iops /dev/mapper/rmp $rw); a=$(fio_iops /dev/mapper/lin $rw)
				fi
				lin_all="$lin_all $a"; rmp_all="$rmp_all $b"
				echo "$disk remaps=$n $rw rep $rep: linear $a IOPS, remap $b IOPS"
			done
			results="$results{\"case\":\"$disk-$rw-remaps$remaps\",\"disk\":\"$disk\",\"rw\":\"$rw\",\"remaps\":$n,\"linear_iops\":[$(echo $lin_all | tr ' ' ',')],\"remap_iops\":[$(echo $rmp_all | tr ' ' ',')]},"
		done
	done
done
dmsetup remove_all
echo "@@BENCH io-raw-$(echo $DISKS | tr ' ' '-') [${results%,}]"
