# Data written through the device lands at main+offset on the raw main device; the spare is not
# touched; reads through the device return what the raw device holds.
# timeout: 180
. /scenarios/lib.sh
load_module
off=8192
wipe "$MAIN" 8
create r0 "0 65536 remap $MAIN $off $SPARE"
random_file /tmp/spare_before 2048
check "seed spare" dd if=/tmp/spare_before of="$SPARE" bs=1M oflag=direct status=none
random_file /tmp/data 256
for sector in 0 8 4096 65280; do
	check "write at $sector" dd if=/tmp/data of=/dev/mapper/r0 bs=512 seek="$sector" oflag=direct status=none
	want=$(sha256sum < /tmp/data | cut -d' ' -f1)
	assert_eq "raw main at $((off + sector))" "$(sha_range "$MAIN" $((off + sector)) 256)" "$want"
	assert_eq "read back at $sector" "$(sha_range /dev/mapper/r0 "$sector" 256)" "$want"
done
# Nothing outside the target's window moved: the sectors before the offset are still zero.
assert_eq "before offset" "$(sha_range "$MAIN" 0 "$off")" "$(dd if=/dev/zero bs=512 count=$off status=none | sha256sum | cut -d' ' -f1)"
assert_eq "spare untouched" "$(sha_range "$SPARE" 0 2048)" "$(sha256sum < /tmp/spare_before | cut -d' ' -f1)"
check "remove" dmsetup remove r0
info "offset mapping ok"
