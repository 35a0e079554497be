# Every bad table line is rejected with its own error message, and nothing leaks (kmemleak).
# timeout: 300
# kernel-args: kmemleak=on
. /scenarios/lib.sh
load_module
main_sz=$(sectors "$MAIN")
M=$MAIN S=$SPARE
bad() { # EXPECTED_MESSAGE TABLE
	dmesg -c >/dev/null
	expect_fail "table '$2'" dmsetup create bad --table "$2"
	dmesg | grep -qF "remap: $1" || { dmesg | tail -5; fail "no '$1' for table '$2'"; }
	[ -e /dev/mapper/bad ] && fail "device left behind by '$2'"
	return 0
}
for round in 1 2 3; do
	bad "Invalid argument count" "0 8192 remap $M 0"
	bad "Invalid argument count" "0 8192 remap"
	bad "Main device lookup failed" "0 8192 remap /dev/nosuch 0 $S"
	bad "Spare device lookup failed" "0 8192 remap $M 0 /dev/nosuch"
	bad "Invalid main device offset" "0 8192 remap $M x $S"
	bad "Invalid main device offset" "0 8192 remap $M -8 $S"
	bad "Main device offset is beyond the end" "0 8192 remap $M $main_sz $S"
	bad "Main device too small for the target length" "0 8192 remap $M $((main_sz - 4096)) $S"
	bad "Main device offset must be a multiple of block_size" "0 8192 remap $M 7 $S"
	bad "Spare device must differ from the main device" "0 8192 remap $M 0 $M"
	bad "Unknown option" "0 8192 remap $M 0 $S 1 colour:blue"
	bad "Invalid block_size" "0 8192 remap $M 0 $S 1 block_size:3000"
	bad "Invalid block_size" "0 8192 remap $M 0 $S 1 block_size:256"
	bad "Invalid read_retries" "0 8192 remap $M 0 $S 1 read_retries:99"
	bad "Invalid optional argument count" "0 8192 remap $M 0 $S 2 block_size:4096"
	bad "Invalid optional argument count" "0 8192 remap $M 0 $S x"
	bad "Option given more than once" "0 8192 remap $M 0 $S 2 block_size:4096 block_size:8192"
done
# A good table still works after all that.
create good "0 8192 remap $M 0 $S"
check "remove good" dmsetup remove good
check "rmmod" rmmod dm_remap
[ -w /sys/kernel/debug/kmemleak ] || fail "kmemleak not available (kernel-args: kmemleak=on?)"
# kmemleak reports objects older than 5 s that it found unreferenced in two scans.
sleep 6
echo scan > /sys/kernel/debug/kmemleak
sleep 1
echo scan > /sys/kernel/debug/kmemleak
leaks=$(cat /sys/kernel/debug/kmemleak)
if echo "$leaks" | grep -qE 'dm_remap|dm_get_device|dm_table|dm_ctr|remap'; then
	echo "$leaks" | sed 's/^/  kmemleak: /' | head -60
	fail "kmemleak reports leaks from the remap target"
fi
[ -n "$leaks" ] && info "kmemleak reports unrelated to dm-remap: $(echo "$leaks" | grep -c unreferenced)"
check "insmod" insmod "$MODULE"
info "bad tables rejected, no leaks"
