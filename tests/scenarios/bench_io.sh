# fio 4K random read/write IOPS of dm-remap vs dm-linear over the same device, interleaved and
# repeated, with 0, 100K and (null_blk) 1M remaps. DISKS=nullb runs over null_blk (the target's
# own CPU cost; meant for an icount VM, where guest time is instructions executed), DISKS=nvme over
# emulated NVMe with a virtio spare (end to end, MTTCG). bench_io_nullb.sh / bench_io_nvme.sh set
# DISKS and the kernel arguments (see bench_io_nullb.sh for slab_min_order).
# fio runs over the first GiB of the device. 100K remaps: 100 runs of 1000 blocks spread over that
# GiB (about 38 % of the random I/O goes to the spare). 1M remaps: one group `remap` message of
# 1048576 blocks after that GiB (the index holds 1M entries, the I/O lands beside them).
# suite: lib
# timeout: 3600
# kernel-args: null_blk.nr_devices=2 null_blk.gb=8 null_blk.irqmode=0 null_blk.queue_mode=2 slab_min_order=3
. /scenarios/lib.sh
load_module
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-3}
DISKS=${DISKS:-nullb nvme}
IO_SECTORS=$((1024 * 2048))   # 1 GiB: the range fio covers
fio_iops() { # DEV RW -> IOPS
	fio --name=b --filename="$1" --direct=1 --ioengine=libaio --iodepth=16 --rw="$2" --bs=4k \
		--time_based=1 --runtime="$RUNTIME" --randrepeat=1 --randseed=1234 --norandommap=1 \
		--size=$((IO_SECTORS / 2048))M --output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' -v rw="$2" '{ if (rw == "randread") print $8; else print $49 }'
}
add_remaps() { # DEV N
	case $2 in
	100000) # 100 runs of 1000 blocks spread over the I/O range
		for r in $(seq 0 99); do
			msg "$1" remap $(( (r * 2593) % 250 * 8192 )) 1000 >/dev/null || fail "remap run $r on $1"
		done ;;
	1000000) # one group message: 2^20 blocks after the I/O range
		msg "$1" remap $IO_SECTORS 1048576 >/dev/null || fail "1M remaps on $1" ;;
	*) fail "no remap layout for $2" ;;
	esac
}
results=""
for disk in $DISKS; do
	if [ $disk = nullb ]; then
		# 6 GiB mapped (null_blk without memory backing: its size costs no RAM), room for 1M
		# 4 KiB remaps after the I/O range and for their slots on the 8 GiB spare.
		main=/dev/nullb0 spare=/dev/nullb1 size=$((6 * 1024 * 2048)) cases="0 100000 1000000"
	else
		main=$MAIN spare=$SPARE size=$IO_SECTORS cases="0 100000"
	fi
	[ -b "$main" ] || fail "$main missing"
	[ "$(sectors "$main")" -ge "$size" ] || fail "$main smaller than $size sectors"
	for remaps in $cases; do
		dmsetup remove_all
		create lin "0 $size linear $main 0"
		create rmp "0 $size remap $main 0 $spare"
		if [ "$remaps" -gt 0 ]; then
			t0=$(now_ms)
			add_remaps rmp "$remaps"
			echo "$disk: $(field rmp 1) remaps made in $(( $(now_ms) - t0 )) ms"
		fi
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
