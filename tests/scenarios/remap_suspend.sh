# Suspend/resume keeps remaps and their data.
# timeout: 300
. /scenarios/lib.sh
load_module
create r0 "0 65536 remap $MAIN 0 $SPARE"
random_file /tmp/model 65536
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
msg r0 remap 800 10 >/dev/null || fail remap
before=$(msg r0 list)
check "suspend" dmsetup suspend r0
check "resume" dmsetup resume r0
assert_eq "remaps after resume" "$(msg r0 list)" "$before"
assert_eq "count after resume" "$(field r0 1)" 10
write_at /dev/mapper/r0 /tmp/model $((800 * 512)) 40960 || fail write
assert_eq "data after resume" "$(sha_range /dev/mapper/r0 0 65536)" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remove" dmsetup remove r0
info "suspend/resume keeps remaps"
