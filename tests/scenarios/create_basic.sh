# Create a remap device (NVMe main, virtio spare) with stock dmsetup; table, status, messages.
# timeout: 120
. /scenarios/lib.sh
load_module
main_sz=$(sectors "$MAIN")
len=$((main_sz - 2048))
create r0 "0 $len remap $MAIN 2048 $SPARE"
[ -b /dev/mapper/r0 ] || fail "/dev/mapper/r0 missing"
assert_eq "device size" "$(sectors /dev/mapper/r0)" "$len"

want="0 $len remap $(devno "$MAIN") 2048 $(devno "$SPARE")"
assert_eq "table" "$(dmsetup table r0)" "$want"

# A blank spare is formatted (metadata copies A and B: sequence 2); the slots are what its
# metadata says lies between the two copies.
spare_blocks=$(md_field "$SPARE" data_slots)
[ "$spare_blocks" -gt $(( $(sectors "$SPARE") / 8 - 4096 )) ] || fail "data slots: $spare_blocks"
assert_eq "status" "$(dmsetup status r0)" "0 $len remap 0 0 0/$spare_blocks 0 0 2 active"

assert_eq "ping" "$(dmsetup message r0 0 ping)" "pong"
dmsetup message r0 0 help | grep -q 'ping' || fail "help does not list ping"
expect_fail "unknown message" dmsetup message r0 0 frobnicate
expect_fail "ping with an argument" dmsetup message r0 0 ping now

check "remove r0" dmsetup remove r0

# Options are reproduced in the table, canonically ordered. (While r0 was live, its main could
# not be used by another mapped device's remap target: see the exclusive scenario.)
create r1 "0 8192 remap $MAIN 0 $SPARE2 2 read_retries:5 block_size:8192"
assert_eq "table with options" "$(dmsetup table r1)" \
	"0 8192 remap $(devno "$MAIN") 0 $(devno "$SPARE2") 2 block_size:8192 read_retries:5"
assert_eq "status with 8 KiB blocks" "$(dmsetup status r1 | cut -d' ' -f6)" "0/$(md_field "$SPARE2" data_slots)"
# The preferred minimum I/O size is the remap block size.
assert_eq "io_min" "$(cat "$(dm_sysfs r1)/queue/minimum_io_size")" 8192
check "remove r1" dmsetup remove r1
info "create/table/status/messages ok"
