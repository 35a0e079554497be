# dm-remap vs dm-linear over emulated NVMe (virtio spare), MTTCG: end-to-end figures.
# suite: bench
# timeout: 3600
DISKS=nvme; RUNTIME=3; REPS=3
. /scenarios/bench_io.sh
