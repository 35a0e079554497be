#!/usr/bin/env bash
# run.sh [--flavour release|debug] [--suite test|demo|bench] [--echo] [SCENARIO...]
# run.sh [--flavour release|debug] --powercut KILLS LOG_OPS [--json FILE]
# Build what the VM needs (kernel, module, userspace, initramfs) and run scenarios in QEMU, or
# the power-cut tests (tests/vm/powercut.py: KILLS kill-QEMU iterations and a dm-log-writes
# replay of a LOG_OPS-operation workload).
source "$(dirname "$0")/../../scripts/lib.sh"

flavour=debug suite=test echo=() scen=() powercut=() pcjson=()
while [ $# -gt 0 ]; do
	case "$1" in
	--flavour) flavour=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	--echo) echo=(--echo); shift ;;
	--powercut) powercut=(--kill "$2" --log-ops "$3"); suite=powercut; shift 3 ;;
	--json) pcjson=(--json "$2"); shift 2 ;;
	-*) die "unknown option $1" ;;
	*) scen+=(--scenario "$1"); shift ;;
	esac
done

kdir=$("$ROOT/scripts/build-kernel.sh" "$flavour")
ko=$("$ROOT/scripts/build-kmod.sh" "$flavour")
extra=("$ko=/lib/modules/dm_remap.ko")
# The guest gets the development build (`make devtools`): the scenarios use its test tools.
bins=$ROOT/target/devtools
for b in dmremap dmremapd; do
	[ -x "$bins/$b" ] && extra+=("$bins/$b=/usr/local/bin/$b")
done
out=$ROOT/target/vm-test/$suite-$flavour
# One run per suite and flavour at a time: they share the output directory.
mkdir -p "$(dirname "$out")"
exec 8>"$out.lock"
flock 8
rm -rf "$out"; mkdir -p "$out"
stage initramfs "$ROOT/tests/vm/mkinitramfs.sh" "$out/initramfs.cpio" "${extra[@]}"
t0=$SECONDS
rc=0
if [ ${#powercut[@]} -gt 0 ]; then
	[ -x "$bins/dmremap" ] || die "$bins/dmremap missing (make devtools)"
	python3 "$ROOT/tests/vm/powercut.py" --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$out/initramfs.cpio" \
		--out "$out" --dmremap "$bins/dmremap" "${powercut[@]}" "${pcjson[@]}" || rc=$?
	log "stage vm-powercut: done in $((SECONDS - t0)) s"
	exit $rc
fi
python3 "$ROOT/tests/vm/run.py" --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$out/initramfs.cpio" \
	--out "$out" --suite "$suite" "${echo[@]}" "${scen[@]}" || rc=$?
log "stage vm-$suite: done in $((SECONDS - t0)) s"
exit $rc
