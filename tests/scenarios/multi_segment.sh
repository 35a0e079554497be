# Two remap segments in one table, the second at a non-zero start with its own offset and spare.
# timeout: 180
. /scenarios/lib.sh
load_module
seg=32768           # sectors per segment
off2=200000         # main offset of the second segment (multiple of 8)
printf '0 %s remap %s 0 %s\n%s %s remap %s %s %s\n' "$seg" "$MAIN" "$SPARE" "$seg" "$seg" "$MAIN" "$off2" "$SPARE2" > /tmp/table
check "create" dmsetup create ms /tmp/table
assert_eq "size" "$(sectors /dev/mapper/ms)" $((2 * seg))
assert_eq "table lines" "$(dmsetup table ms | wc -l)" 2
random_file /tmp/a 128
random_file /tmp/b 128
random_file /tmp/c 256
check "write seg1" dd if=/tmp/a of=/dev/mapper/ms bs=512 seek=100 oflag=direct status=none
check "write seg2" dd if=/tmp/b of=/dev/mapper/ms bs=512 seek=$((seg + 1000)) oflag=direct status=none
# A write across the boundary is split by device-mapper between the two targets.
check "write across" dd if=/tmp/c of=/dev/mapper/ms bs=512 seek=$((seg - 128)) oflag=direct status=none
sha() { sha256sum < "$1" | cut -d' ' -f1; }
assert_eq "seg1 on main" "$(sha_range "$MAIN" 100 128)" "$(sha /tmp/a)"
assert_eq "seg2 on main" "$(sha_range "$MAIN" $((off2 + 1000)) 128)" "$(sha /tmp/b)"
dd if=/tmp/c bs=512 count=128 status=none > /tmp/c1
dd if=/tmp/c bs=512 skip=128 status=none > /tmp/c2
assert_eq "across, first half" "$(sha_range "$MAIN" $((seg - 128)) 128)" "$(sha /tmp/c1)"
assert_eq "across, second half" "$(sha_range "$MAIN" "$off2" 128)" "$(sha /tmp/c2)"
assert_eq "read back across" "$(sha_range /dev/mapper/ms $((seg - 128)) 256)" "$(sha /tmp/c)"
for n in 0 1; do
	dmsetup status ms | sed -n "$((n + 1))p" | grep -q ' active$' || fail "segment $n status: $(dmsetup status ms)"
done
check "remove" dmsetup remove ms
info "two segments ok"
