# Remap storm: durable remaps per second with group commit (1024 remaps per commit) and with one
# commit per remap, on the NVMe main with a virtio spare.
# suite: bench
# timeout: 1800
. /scenarios/lib.sh
load_module
create r0 "0 $(sectors $MAIN) remap $MAIN 0 $SPARE"
dmremap bench storm r0 --remaps 4096 --batch 1024 --start 8192 --out /tmp/storm.json || fail "dmremap bench storm"
dmsetup status r0
echo "@@BENCH storm $(cat /tmp/storm.json)"
