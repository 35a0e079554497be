# In-kernel microbenchmarks (alloc, alloc_full, lookup, insert, noop) at 0, 1K, 100K and 1M remaps.
# suite: bench
# timeout: 1800
. /scenarios/lib.sh
load_module
command -v dmremap >/dev/null || fail "dmremap binary missing from the initramfs"
dmremap bench kernel --iterations 200000 --out /tmp/kernel.json || fail "dmremap bench kernel"
echo "@@BENCH kernel $(cat /tmp/kernel.json)"
