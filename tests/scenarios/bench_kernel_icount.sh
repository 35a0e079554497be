# In-kernel microbenchmarks in an icount VM: guest ktime advances one ns per instruction, so the
# figures are instructions per operation, repeatable across runs.
# suite: bench
# clock: icount
# timeout: 1800
. /scenarios/lib.sh
load_module
dmremap bench kernel --iterations 50000 --out /tmp/kernel.json || fail "dmremap bench kernel"
echo "@@BENCH kernel-icount $(cat /tmp/kernel.json)"
