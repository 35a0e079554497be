# A 4Kn NVMe main (4096-byte logical blocks) with 8 KiB remap blocks and a target length that is a
# multiple of 4 KiB but not of 8 KiB (a partial last block): a full-block write error heals, a
# read that fails once is recovered, the last block moves and comes back without touching the
# 4 KiB past the target's end, and remaps survive re-creation.
# vm: nvme4k
# timeout: 300
# kernel-args: nvme_core.max_retries=0
. /scenarios/lib.sh
load_module
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# sha4k DEV START_SECTOR SECTORS: sha4k in 4 KiB direct reads (4Kn devices refuse 512).
sha4k() { dd if="$1" bs=4096 skip=$(($2 / 8)) count=$(($3 / 8)) iflag=direct status=none | sha256sum | cut -d' ' -f1; }
assert_eq "main logical block size" "$(cat /sys/block/nvme0n1/queue/logical_block_size)" 4096
check "blank spare" blank $SPARE
N=$(sectors $MAIN)
LEN=$((N - 8))
T="0 $LEN remap $MAIN 0 $SPARE 1 block_size:8192"
create r0 "$T"
assert_eq "mapped device logical block size" "$(blockdev --getss /dev/mapper/r0)" 4096
random_file /tmp/base 256
check "baseline" dd if=/tmp/base of=/dev/mapper/r0 bs=128K seek=$((16384 * 512 / 131072)) oflag=direct conv=notrunc status=none

info "a full-block write error heals"
check "fault" host_do fault nvme0 write 16400
random_file /tmp/a 64
check "32 KiB write over the failing block" dd if=/tmp/a of=/dev/mapper/r0 bs=32K seek=$((16384 * 512 / 32768)) oflag=direct conv=notrunc status=none
assert_eq "remapped" "$(field r0 1)" 1
assert_eq "data" "$(sha4k /dev/mapper/r0 16384 64)" "$(sha /tmp/a)"
check "clear faults" host_do clear-faults nvme0

info "a read that fails once is recovered"
check "fault" host_do fault nvme0 read 16616 once
dd if=/tmp/base of=/tmp/base_r bs=512 skip=232 count=8 status=none
assert_eq "read" "$(sha4k /dev/mapper/r0 16616 8)" "$(sha /tmp/base_r)"
assert_eq "recovered onto the spare" "$(field r0 1)" 2
check "clear faults" host_do clear-faults nvme0

info "the partial last block"
random_file /tmp/past 8
check "data past the target's end" dd if=/tmp/past of=$MAIN bs=4K seek=$((LEN / 8)) oflag=direct conv=notrunc status=none
random_file /tmp/last 8
check "write the last 4 KiB of the target" dd if=/tmp/last of=/dev/mapper/r0 bs=4K seek=$((LEN / 8 - 1)) oflag=direct conv=notrunc status=none
assert_eq "remap the last block" "$(msg r0 remap $((LEN - 8)))" "remapped 1 blocks, 0 already remapped"
assert_eq "read it from the spare" "$(sha4k /dev/mapper/r0 $((LEN - 8)) 8)" "$(sha /tmp/last)"
# Whatever is past the target's end changes meanwhile (another user of the disk).
random_file /tmp/past 8
check "new data past the target's end" dd if=/tmp/past of=$MAIN bs=4K seek=$((LEN / 8)) oflag=direct conv=notrunc status=none
check "unremap it" msg r0 unremap $((LEN - 8))
assert_eq "past the end untouched" "$(sha4k $MAIN $LEN 8)" "$(sha /tmp/past)"
assert_eq "last block back on main" "$(sha4k $MAIN $((LEN - 8)) 8)" "$(sha /tmp/last)"

timed_ms 10000 "remove" dmsetup remove r0
create r0 "$T"
assert_eq "remaps after re-create" "$(field r0 1)" 2
assert_eq "data after re-create" "$(sha4k /dev/mapper/r0 16384 64)" "$(sha /tmp/a)"
check "remove" dmsetup remove r0
echo "fault_4kn: ok"
