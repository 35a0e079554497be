# Every write to main and spare recorded in order by dm-log-writes (on /dev/vda) while a remap
# storm mixed with verified writes runs; tests/powercut/powercut.py replays crash states from the
# log onto fresh images and checks them against the operations acknowledged at each point.
# suite: powercut
# timeout: 900
. /scenarios/lib.sh
. /scenarios/powercut.inc
load_module
ops=${PC_OPS:-120}
for w in $(cat /proc/cmdline); do case "$w" in dmr.pc_ops=*) ops=${w#dmr.pc_ops=} ;; esac; done
total=$((PC_MAIN_SECTORS + PC_SPARE_SECTORS))
check "zero the region" dd if=/dev/zero of=$MAIN bs=1M count=$((total / 2048)) oflag=direct status=none
check "zero the log start" dd if=/dev/zero of=$SPARE bs=1M count=1 oflag=direct status=none
create lw "0 $total log-writes $MAIN $SPARE"
create m "0 $PC_MAIN_SECTORS linear /dev/mapper/lw 0"
create s "0 $PC_SPARE_SECTORS linear /dev/mapper/lw $PC_MAIN_SECTORS"
check "mark" dmsetup message lw 0 mark start
create r0 "0 $PC_MAIN_SECTORS remap /dev/mapper/m 0 /dev/mapper/s"
check "mark" dmsetup message lw 0 mark created
echo "@@GO" > /dev/console
pc_workload r0 "$ops" lw || fail "workload"
check "remove r0" dmsetup remove r0
check "remove" dmsetup remove m s
check "remove lw" dmsetup remove lw
echo "@@LOGGED $(blockdev --getsz $SPARE)"
# The host reads the log from the disk image after the VM stopped.
touch /tmp/keep-disks
echo "powercut_log: ok"
