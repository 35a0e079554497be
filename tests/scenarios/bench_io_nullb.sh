# dm-remap vs dm-linear over null_blk in an icount VM: the target's own CPU cost, repeatable.
# suite: bench
# clock: icount
# timeout: 3600
# kernel-args: null_blk.nr_devices=2 null_blk.gb=1 null_blk.irqmode=0 null_blk.queue_mode=2
DISKS=nullb; RUNTIME=1; REPS=3
. /scenarios/bench_io.sh
