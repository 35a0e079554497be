#!/usr/bin/env bash
# run.sh [--flavour release|debug|distro] [--suite test|full|demo|bench] [--echo] [SCENARIO...]
# run.sh [--flavour release|debug|distro] --powercut KILLS LOG_OPS [--json FILE]
# Build what the VM needs (kernel, module, userspace, initramfs) and run scenarios in QEMU, or
# the power-cut tests (tests/vm/powercut.py: KILLS kill-QEMU iterations and a dm-log-writes
# replay of a LOG_OPS-operation workload).
# Flavour distro: Debian's own kernel (DISTRO_KVER, default 7.3.4+deb13-amd64, unmodified) and
# modules instead of a test kernel; the run fails unless the guest reports that `uname -r`.
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

expect=()
if [ "$flavour" = distro ]; then
	# Debian's unmodified kernel with its own modules, and the module built for it in a Debian 13
	# root (scripts/build-distro-kmod.sh).
	kver=${DISTRO_KVER:-7.3.4+deb13-amd64}
	kout=$("$ROOT/scripts/fetch-distro-kernel.sh" "$kver")
	kernel=$kout/vmlinuz
	ko=$("$ROOT/scripts/build-distro-kmod.sh" --kver "$kver")
	extra=("$ko=/lib/modules/dm_remap.ko" "$kout/modules/etc/dmr-modules=/etc/dmr-modules")
	while read -r m; do extra+=("$kout/modules$m=$m"); done < "$kout/modules/etc/dmr-modules"
	expect=(--expect-kernel "$kver")
else
	kdir=$("$ROOT/scripts/build-kernel.sh" "$flavour")
	kernel=$kdir/arch/x86/boot/bzImage
	ko=$("$ROOT/scripts/build-kmod.sh" "$flavour")
	extra=("$ko=/lib/modules/dm_remap.ko")
fi
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
	python3 "$ROOT/tests/vm/powercut.py" --kernel "$kernel" --initrd "$out/initramfs.cpio" \
		--out "$out" --dmremap "$bins/dmremap" "${powercut[@]}" "${pcjson[@]}" || rc=$?
	log "stage vm-powercut: done in $((SECONDS - t0)) s"
	exit $rc
fi
python3 "$ROOT/tests/vm/run.py" --kernel "$kernel" --initrd "$out/initramfs.cpio" \
	--out "$out" --suite "$suite" "${echo[@]}" "${expect[@]}" "${scen[@]}" || rc=$?
log "stage vm-$suite: done in $((SECONDS - t0)) s"
exit $rc
