# Power cut by killing QEMU (driven by tests/powercut/powercut.py, which kills the VM at a random
# moment after @@GO and checks the disk images against the acknowledged operations).
# suite: powercut
# timeout: 600
# vm: default
. /scenarios/lib.sh
. /scenarios/powercut.inc
load_module
create m "0 $PC_MAIN_SECTORS linear $MAIN 0"
create s "0 $PC_SPARE_SECTORS linear $MAIN $PC_MAIN_SECTORS"
create r0 "0 $PC_MAIN_SECTORS remap /dev/mapper/m 0 /dev/mapper/s"
echo "@@GO" > /dev/console
pc_workload r0 100000
