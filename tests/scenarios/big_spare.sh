# A 1 TiB spare (sparse image): its slot bitmap (32 MiB at 4 KiB blocks) is vmalloc-backed, so
# create, remap, reload and re-create work; prints the kernel memory the target takes.
# vm: bigspare
# timeout: 180
. /scenarios/lib.sh
load_module
BIG=/dev/vdc
assert_eq "big spare size (sectors)" "$(sectors $BIG)" $((1 << 31))
mem() { awk -v k="$1" '$1 == k":" {print $2}' /proc/meminfo; }
vm0=$(mem VmallocUsed); slab0=$(mem Slab)
T="0 262144 remap $MAIN 0 $BIG"
create r0 "$T"
vm1=$(mem VmallocUsed); slab1=$(mem Slab)
info "kernel memory for the 1 TiB spare: vmalloc +$((vm1 - vm0)) KiB, slab +$((slab1 - slab0)) KiB; slots $(field r0 3)"
total=$(field r0 3 | cut -d/ -f2)
[ "$total" -gt 250000000 ] || fail "slot count $total for 1 TiB"
[ $((vm1 - vm0)) -ge $((total / 8 / 1024)) ] || fail "the slot bitmap is not vmalloc-backed (+$((vm1 - vm0)) KiB)"
random_file /tmp/d 64
check "write" dd if=/tmp/d of=/dev/mapper/r0 bs=512 seek=800 oflag=direct status=none
want=$(sha256sum < /tmp/d | cut -d' ' -f1)
out=$(msg r0 remap 800 8) || fail "remap 800 8"
assert_eq "remap answer" "$out" "remapped 8 blocks, 0 already remapped"
check "reload" dmsetup reload r0 --table "$T"
check "resume" dmsetup resume r0
assert_eq "remapped after reload" "$(field r0 1)" 8
check "remove" dmsetup remove r0
vm2=$(mem VmallocUsed)
info "vmalloc after remove: +$((vm2 - vm0)) KiB"
create r0 "$T"
assert_eq "remapped after re-create" "$(field r0 1)" 8
assert_eq "data after re-create" "$(sha_range /dev/mapper/r0 800 64)" "$want"
check "remove" dmsetup remove r0
info "big spare: ok"
