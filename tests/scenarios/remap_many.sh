# 100K remaps (512-byte blocks): every one listed, data intact, memory used reported; a single
# remap at 100K remaps writes one journal block and its data to the spare.
# suite: full
# timeout: 1800
. /scenarios/lib.sh
load_module
# Kernel memory in slab caches and vmalloc areas (page-cache users are dropped first to keep them
# quiet): what the index, and anything else allocated meanwhile, takes.
slab_bytes() { sync; echo 3 > /proc/sys/vm/drop_caches; awk '$1 == "Slab:" || $1 == "VmallocUsed:" {s += $2} END {print s * 1024}' /proc/meminfo; }
create r0 "0 $((256 * 2048)) remap $MAIN 0 $SPARE 1 block_size:512"
random_file /tmp/model $((256 * 2048))
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
s1=$(slab_bytes)
# 100 runs of 1000 blocks spread over the device.
for r in $(seq 0 99); do
	start=$(( (r * 5237) % 520 * 1000 ))
	msg r0 remap $start 1000 >/dev/null || fail "remap run $r"
done
n=$(field r0 1)
[ "$n" -ge 100000 ] || info "distinct remapped blocks: $n"
s2=$(slab_bytes)
bitmap=$(( $(field r0 3 | cut -d/ -f2) / 8 ))
info "remaps: $n; kernel memory (slab + vmalloc) grew by $(( (s2 - s1) / 1024 )) KiB = $(( (s2 - s1) / n )) bytes per remap; slot bitmap: $(( bitmap / 1024 )) KiB"
# Sectors one more single remap writes to the spare: one journal block and the block's data.
SDEV=$(basename "$(readlink -f $SPARE)")
: > /tmp/cost
for i in $(seq 0 8); do
	w0=$(awk '{print $7}' /sys/block/$SDEV/stat)
	msg r0 remap $((520000 + i * 10)) >/dev/null || fail "single remap $i"
	echo $(( $(awk '{print $7}' /sys/block/$SDEV/stat) - w0 )) >> /tmp/cost
done
med=$(sort -n /tmp/cost | sed -n 5p)
info "sectors written per single remap at $n remaps: median $med, max $(sort -n /tmp/cost | tail -1)"
[ "$med" -le 9 ] || fail "a single remap at $n remaps wrote $med sectors (want 9)"
n=$((n + 9))
assert_eq "listed" "$(msg r0 list 0 200000 | wc -l)" "$n"
assert_eq "data" "$(sha_range /dev/mapper/r0 0 $((256 * 2048)))" "$(sha256sum < /tmp/model | cut -d' ' -f1)"
check "remove" dmsetup remove r0
info "100K remaps ok"
