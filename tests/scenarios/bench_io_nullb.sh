# dm-remap vs dm-linear over null_blk in an icount VM: the target's own CPU cost, repeatable.
# slab_min_order=3: the release kernel is built from tinyconfig, which selects SLUB_TINY (no
# per-CPU slabs; a slab that empties is freed at once, through RCU for the bio caches). With
# order-0 slabs, 16 bios in flight made the slab cache of dm-linear's clones allocate and free a
# page again and again (new_slab, call_rcu, the page allocator: about 9 % of the guest's
# instructions) while the cache of dm-remap's larger clones (it has per-bio data) did not: dm-linear
# measured 10 % slower than dm-remap, an artefact of object size. With 8-page slabs neither churns;
# raw null_blk IOPS are the same with and without it.
# suite: bench
# clock: icount
# timeout: 3600
# kernel-args: null_blk.nr_devices=2 null_blk.gb=8 null_blk.irqmode=0 null_blk.queue_mode=2 slab_min_order=3
DISKS=nullb; RUNTIME=1; REPS=3
. /scenarios/bench_io.sh
