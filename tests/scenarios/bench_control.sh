# Control-path round trips: `dmsetup message DEV 0 ping` as a process, DM_TARGET_MSG from Rust,
# our own DMR_IOC_VERSION ioctl and the in-kernel no-op (`dmremap bench control`).
# suite: bench
# timeout: 1200
. /scenarios/lib.sh
load_module
command -v dmremap >/dev/null || fail "dmremap binary missing from the initramfs"
create bc "0 $(sectors "$SPARE2") remap $MAIN 0 $SPARE2"
assert_eq "ping" "$(msg bc ping)" pong
# Warm up the page cache for dmsetup and its libraries before timing.
for i in 1 2 3; do msg bc ping >/dev/null; done
dmremap bench control --device bc --process-iterations 300 --dm-iterations 20000 --iterations 200000 \
	--out /tmp/control.json || fail "dmremap bench control"
echo "@@BENCH control $(cat /tmp/control.json)"
dmsetup remove bc
