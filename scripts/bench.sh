#!/usr/bin/env bash
# bench.sh NAME: run a benchmark and write target/bench/NAME.json.
#   kernel   in-kernel alloc/lookup/insert/noop (release kernel, MTTCG) + the same core code
#            natively under criterion
#   io       fio 4K random IOPS, dm-remap vs dm-linear, null_blk and NVMe, 0 and 100K remaps
source "$(dirname "$0")/lib.sh"
name=${1:?usage: bench.sh kernel|io}
mkdir -p "$ROOT/target/bench"
out=$ROOT/target/bench/$name.json
case "$name" in
kernel|io) ;;
*) die "unknown benchmark '$name' (have: kernel, io)" ;;
esac
"$ROOT/tests/vm/run.sh" --flavour release --suite bench --echo "bench_$name"
log=$ROOT/target/vm-test/bench-release/guest.log
case "$name" in
kernel)
	line=$(grep -a '^@@BENCH kernel ' "$log" | tail -n1) || die "no result in $log"
	vm=${line#@@BENCH kernel }
	(cd "$ROOT" && cargo bench -q -p dmremap-core --bench engine -- --noplot >/dev/null 2>&1) || die "criterion bench failed"
	python3 "$ROOT/scripts/bench_report.py" kernel "$vm" "$ROOT/target/criterion" > "$out"
	;;
io)
	line=$(grep -a '^@@BENCH io-raw ' "$log" | tail -n1) || die "no result in $log"
	python3 "$ROOT/scripts/bench_report.py" io "${line#@@BENCH io-raw }" > "$out"
	;;
esac
log "wrote $out"
cat "$out"
