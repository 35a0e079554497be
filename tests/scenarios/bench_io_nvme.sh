# dm-remap vs dm-linear over emulated NVMe (virtio spare), MTTCG: end-to-end figures.
# slab_min_order=3 as for null_blk (see bench_io_nullb.sh).
# suite: bench
# kernel-args: slab_min_order=3
# timeout: 3600
DISKS=nvme; RUNTIME=3; REPS=3
. /scenarios/bench_io.sh
