#!/usr/bin/env bash
# build-kmod.sh FLAVOUR|KDIR=<dir>: build dm_remap.ko.
#   FLAVOUR (release|debug): against the cached test kernel of that flavour (built if missing),
#   with the same rustc/bindgen/LLVM settings as that kernel. The module lands in
#   target/kmod/FLAVOUR/dm_remap.ko.
#   KDIR=<dir>: against any kernel build tree with CONFIG_RUST, using RUSTC/BINDGEN/LLVM from the
#   environment (they must be the ones that kernel was built with). Lands in target/kmod/host/.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/kenv.sh"

arg=${1:?usage: build-kmod.sh release|debug|KDIR=<dir>}
case "$arg" in
KDIR=*)
	kdir=${arg#KDIR=}; name=host
	[ -f "$kdir/Makefile" ] || die "KDIR=$kdir is not a kernel build tree"
	grep -q '^CONFIG_RUST=y' "$kdir/.config" 2>/dev/null || die "kernel at $kdir was not built with CONFIG_RUST=y"
	vars=()
	for v in RUSTC HOSTRUSTC RUSTDOC BINDGEN LLVM CC LD; do
		[ -n "${!v:-}" ] && vars+=("$v=${!v}")
	done
	;;
*)
	kdir=$("$ROOT/scripts/build-kernel.sh" "$arg"); name=$arg
	vars=("${KMAKEVARS[@]}")
	;;
esac

# Objects live beside the sources (M=): clean them when the kernel changes.
stamp=$ROOT/kmod/.built-for
if [ "$(cat "$stamp" 2>/dev/null)" != "$kdir" ]; then
	make -C "$kdir" M="$ROOT" "${vars[@]}" clean >/dev/null 2>&1 || true
	rm -rf "$ROOT/kmod/generated"
fi
build() {
	make -C "$kdir" M="$ROOT" "${vars[@]}" -j"$(nproc)" modules >"$ROOT/kmod/build.log" 2>&1 \
		|| { cat "$ROOT/kmod/build.log"; die "module build failed"; }
	if grep -E '^(warning|error)' "$ROOT/kmod/build.log" >/dev/null; then
		grep -E -A8 '^(warning|error)' "$ROOT/kmod/build.log" >&2
	fi
}
stage "kmod-$name" build
echo "$kdir" > "$stamp"
mkdir -p "$ROOT/target/kmod/$name"
cp "$ROOT/kmod/dm_remap.ko" "$ROOT/target/kmod/$name/dm_remap.ko"
echo "$ROOT/target/kmod/$name/dm_remap.ko"
