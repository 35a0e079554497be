# dmsetup reload + resume with the same devices keeps data and table; suspend/resume too.
# timeout: 180
. /scenarios/lib.sh
load_module
table="0 65536 remap $MAIN 2048 $SPARE 1 block_size:8192"
create r0 "$table"
random_file /tmp/data 4096
check "write" dd if=/tmp/data of=/dev/mapper/r0 bs=1M oflag=direct status=none
want=$(sha256sum < /tmp/data | cut -d' ' -f1)
before=$(dmsetup table r0)
check "reload" dmsetup reload r0 --table "$table"
check "resume" dmsetup resume r0
assert_eq "table after reload" "$(dmsetup table r0)" "$before"
assert_eq "data after reload" "$(sha_range /dev/mapper/r0 0 4096)" "$want"
check "suspend" dmsetup suspend r0
check "resume" dmsetup resume r0
assert_eq "data after suspend/resume" "$(sha_range /dev/mapper/r0 0 4096)" "$want"
# Reload with different options takes effect.
check "reload with new options" dmsetup reload r0 --table "0 65536 remap $MAIN 2048 $SPARE 2 block_size:8192 read_retries:1"
check "resume" dmsetup resume r0
assert_eq "table after option change" "$(dmsetup table r0)" "0 65536 remap $(devno "$MAIN") 2048 $(devno "$SPARE") 2 block_size:8192 read_retries:1"
# The spare was formatted for 8 KiB blocks: a table with another block size is refused.
expect_fail "reload with another block size" dmsetup reload r0 --table "0 65536 remap $MAIN 2048 $SPARE 1 read_retries:1"
assert_eq "data after option change" "$(sha_range /dev/mapper/r0 0 4096)" "$want"
# A bad reload leaves the live table alone.
expect_fail "bad reload" dmsetup reload r0 --table "0 65536 remap $MAIN 2048 /dev/nosuch"
assert_eq "data after failed reload" "$(sha_range /dev/mapper/r0 0 4096)" "$want"
check "remove" dmsetup remove r0
info "reload/resume keep state"
