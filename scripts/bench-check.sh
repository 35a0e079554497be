#!/usr/bin/env bash
# bench-check.sh [--update]: the performance gate. Runs the icount-VM benchmarks (the in-kernel
# microbenchmarks and dm-remap vs dm-linear over null_blk; instruction counts, repeatable to
# ~0.2 %) and compares their figures with tests/bench/baseline.json (scripts/bench_check.py): exits 1
# when one regressed by more than 2 %. --update writes this run's figures as the new baselines.
source "$(dirname "$0")/lib.sh"
mode=compare
[ "${1:-}" = --update ] && mode=update
baseline=$ROOT/tests/bench/baseline.json
t0=$SECONDS
"$ROOT/tests/vm/run.sh" --flavour release --suite bench bench_kernel_icount bench_io_nullb ||
	die "the icount benchmarks failed (see target/vm-test/bench-release/guest.log)"
guest=$ROOT/target/vm-test/bench-release/guest.log
mkdir -p "$ROOT/target/bench"
python3 "$ROOT/scripts/bench_check.py" figures "$guest" > "$ROOT/target/bench/check.json" || die "no figures in $guest"
rc=0
python3 "$ROOT/scripts/bench_check.py" "$mode" "$baseline" "$guest" || rc=$?
log "bench-check: $((SECONDS - t0)) s"
exit $rc
