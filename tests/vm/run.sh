#!/usr/bin/env bash
# run.sh [--flavour release|debug] [--suite test|demo] [--echo] [SCENARIO...]
# Build what the VM needs (kernel, module, userspace, initramfs) and run scenarios in QEMU.
source "$(dirname "$0")/../../scripts/lib.sh"

flavour=debug suite=test echo=() scen=()
while [ $# -gt 0 ]; do
	case "$1" in
	--flavour) flavour=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	--echo) echo=(--echo); shift ;;
	-*) die "unknown option $1" ;;
	*) scen+=(--scenario "$1"); shift ;;
	esac
done

kdir=$("$ROOT/scripts/build-kernel.sh" "$flavour")
ko=$("$ROOT/scripts/build-kmod.sh" "$flavour")
extra=("$ko=/lib/modules/dm_remap.ko")
for b in dmremap dmremapd; do
	[ -x "$ROOT/target/release/$b" ] && extra+=("$ROOT/target/release/$b=/usr/local/bin/$b")
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
python3 "$ROOT/tests/vm/run.py" --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$out/initramfs.cpio" \
	--out "$out" --suite "$suite" "${echo[@]}" "${scen[@]}" || rc=$?
log "stage vm-$suite: done in $((SECONDS - t0)) s"
exit $rc
