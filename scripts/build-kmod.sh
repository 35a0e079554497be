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

# Each kernel gets its own build tree (a copy of the module sources: kmod/, the shared core and the
# ABI header), so builds for different kernels never clean each other's objects, and a lock keeps
# concurrent builds for the same kernel apart. Files are copied only when they changed, with a new
# mtime (a source switched to an older version must still be newer than its stale object).
bdir=$ROOT/target/kmod-build/$name
mkdir -p "$bdir"
exec 9>"$bdir.lock"
flock 9
sync_tree() {
	local f
	(cd "$ROOT" && { echo Kbuild; ls kmod/*.rs kmod/*.c kmod/*.h kmod/Kbuild kmod/gen-bindings.sh core/src/*.rs core/src/metadata/*.rs include/*.h; }) |
	while read -r f; do
		if ! cmp -s "$ROOT/$f" "$bdir/$f"; then
			mkdir -p "$bdir/$(dirname "$f")"
			cp "$ROOT/$f" "$bdir/$f"
		fi
	done
	# Drop files that left the sources.
	(cd "$bdir" && find kmod core include -type f \( -name '*.rs' -o -name '*.c' -o -name '*.h' \) ! -path 'kmod/generated/*' ! -name '*.mod.c') |
	while read -r f; do [ -e "$ROOT/$f" ] || rm -f "$bdir/$f"; done
}
sync_tree
if [ "$(cat "$bdir/.built-for" 2>/dev/null)" != "$kdir" ]; then
	make -C "$kdir" M="$bdir" "${vars[@]}" clean >/dev/null 2>&1 || true
	rm -rf "$bdir/kmod/generated"
fi
build() {
	make -C "$kdir" M="$bdir" "${vars[@]}" -j"$(nproc)" modules >"$bdir/build.log" 2>&1 \
		|| { cat "$bdir/build.log"; die "module build failed ($bdir/build.log)"; }
	if grep -E '^(warning|error)' "$bdir/build.log" >/dev/null; then
		grep -E -A8 '^(warning|error)' "$bdir/build.log" >&2
	fi
}
stage "kmod-$name" build
echo "$kdir" > "$bdir/.built-for"
mkdir -p "$ROOT/target/kmod/$name"
cp "$bdir/kmod/dm_remap.ko" "$ROOT/target/kmod/$name/dm_remap.ko.tmp"
mv "$ROOT/target/kmod/$name/dm_remap.ko.tmp" "$ROOT/target/kmod/$name/dm_remap.ko"
echo "$ROOT/target/kmod/$name/dm_remap.ko"
