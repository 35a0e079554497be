#!/usr/bin/env bash
# bench.sh NAME: run a benchmark and write target/bench/NAME.json.
#   kernel   in-kernel alloc/lookup/insert/noop (release kernel, MTTCG) + the same core code
#            natively under criterion
#   io       fio 4K random IOPS, dm-remap vs dm-linear, null_blk and NVMe, 0 and 100K remaps
#   nvme     `dmremap nvme bench` scrape cycles over ten emulated NVMe controllers (cold and warm
#            type cache, p50/p99, allocations per cycle)
#   control  control-path round trips: `dmsetup message DEV 0 ping` as a process, DM_TARGET_MSG
#            from Rust, our own DMR_IOC_VERSION ioctl and the in-kernel no-op (release kernel)
#   storm    durable remaps per second, group commit vs one commit per remap; at 0, 100K and 1M
#            existing remaps: single-remap latency p50/p99, metadata bytes per single remap,
#            group-commit remaps/s; load time of 1M remaps (release kernel)
#   powercut 100 kill-QEMU power cuts + >= 100 crash states replayed from a dm-log-writes
#            recording; lost writes / remaps and corrupt metadata (release kernel)
#   scrub    `dmremapd scrub` of the VM's NVMe disk vs fio sequential reads of it (ratio, goal
#            >= 0.9), plus the host's tmpfs buffer-pool comparison (`dmremapd bench scrub --quick`)
#   pipeline, jitter
#            the daemon's own benchmarks on the host (`dmremapd bench NAME`)
source "$(dirname "$0")/lib.sh"
name=${1:?usage: bench.sh kernel|io|nvme|control|storm|powercut|pipeline|jitter|scrub}
mkdir -p "$ROOT/target/bench"
out=$ROOT/target/bench/$name.json
case "$name" in
kernel|io|nvme|control|storm|scrub) ;;
powercut)
	"$ROOT/tests/vm/run.sh" --flavour release --powercut "${PC_KILLS:-100}" "${PC_LOG_OPS:-150}" --json "$out" || die "power-cut test failed (see target/vm-test/powercut-release/guest.log)"
	log "wrote $out"
	exit 0
	;;
pipeline|jitter)
	"$ROOT/target/devtools/dmremapd" bench "$name" --out "$out"
	log "wrote $out"
	exit 0
	;;
*) die "unknown benchmark '$name' (have: kernel, io, nvme, control, storm, powercut, pipeline, jitter, scrub)" ;;
esac
scen=("bench_$name")
[ "$name" = io ] && scen=(bench_io_nullb bench_io_nvme)
[ "$name" = kernel ] && scen=(bench_kernel bench_kernel_icount)
"$ROOT/tests/vm/run.sh" --flavour release --suite bench --echo "${scen[@]}"
log=$ROOT/target/vm-test/bench-release/guest.log
case "$name" in
kernel)
	line=$(grep -a '^@@BENCH kernel ' "$log" | tail -n1) || die "no result in $log"
	vm=${line#@@BENCH kernel }
	(cd "$ROOT" && cargo bench -q -p dmremap-core --bench engine -- --noplot >/dev/null 2>&1) || die "criterion bench failed"
	ic=$(grep -a '^@@BENCH kernel-icount ' "$log" | tail -n1) || die "no icount result in $log"
	python3 "$ROOT/scripts/bench_report.py" kernel "$vm" "$ROOT/target/criterion" "${ic#@@BENCH kernel-icount }" > "$out"
	;;
io)
	a=$(grep -a '^@@BENCH io-raw-nullb ' "$log" | tail -n1) || die "no null_blk result in $log"
	b=$(grep -a '^@@BENCH io-raw-nvme ' "$log" | tail -n1) || die "no NVMe result in $log"
	python3 "$ROOT/scripts/bench_report.py" io "${a#@@BENCH io-raw-nullb }" "${b#@@BENCH io-raw-nvme }" > "$out"
	;;
storm)
	line=$(grep -a '^@@BENCH storm ' "$log" | tail -n1) || die "no result in $log"
	load=$(grep -a '^@@BENCH storm-load ' "$log" | tail -n1) || die "no load result in $log"
	mapfile -t at < <(grep -a '^@@BENCH storm-at ' "$log" | sed 's/^@@BENCH storm-at //')
	[ "${#at[@]}" -gt 0 ] || die "no storm-at results in $log"
	python3 "$ROOT/scripts/bench_report.py" storm "${line#@@BENCH storm }" "${load#@@BENCH storm-load }" "${at[@]}" > "$out"
	;;
scrub)
	line=$(grep -a '^@@BENCH scrub ' "$log" | tail -n1) || die "no result in $log"
	tmpfs=$ROOT/target/bench/scrub-tmpfs.json
	"$ROOT/target/devtools/dmremapd" bench scrub --out "$tmpfs" >/dev/null || die "tmpfs scrub bench failed"
	python3 "$ROOT/scripts/bench_report.py" scrub "${line#@@BENCH scrub }" "$tmpfs" > "$out"
	;;
nvme)
	line=$(grep -a '^@@BENCH nvme ' "$log" | tail -n1) || die "no result in $log"
	python3 "$ROOT/scripts/bench_report.py" nvme "${line#@@BENCH nvme }" > "$out"
	;;
control)
	line=$(grep -a '^@@BENCH control ' "$log" | tail -n1) || die "no result in $log"
	python3 "$ROOT/scripts/bench_report.py" control "${line#@@BENCH control }" > "$out"
	;;
esac
log "wrote $out"
cat "$out"
