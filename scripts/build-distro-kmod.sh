#!/usr/bin/env bash
# build-distro-kmod.sh [--host|--root] [--kver VER] [--kdir DIR] [--ksrc TARBALL] [--src DIR]
#                      [--out FILE] [--cache DIR]
#
# Build dm_remap.ko for a distribution kernel built with CONFIG_RUST=y whose headers package has no
# Rust metadata (Debian 13's linux-headers-7.3.x). The kernel's Rust crates (core, kernel, macros,
# ...) are rebuilt from the matching linux-source tarball with the headers' .config and
# Module.symvers and the same rustc: the same compiler and flags give the same crate hashes, so the
# module's Rust symbols are the ones the distribution kernel exports. The rebuilt tree is cached
# per kernel version; a second run only rebuilds the module.
#
#   --host    build on this machine: it must have the kernel's rustc (CONFIG_RUSTC_VERSION_TEXT),
#             bindgen, its C compiler (CONFIG_CC_VERSION_TEXT), the headers and the source
#             tarball (Debian 13: rustc rust-src bindgen libclang-dev dwarves
#             linux-headers-VER linux-source-SERIES). The default on Debian 13.
#   --root    build inside a Debian 13 root made with mmdebstrap (cached under
#             $CACHE/distro/VER/root) holding exactly those packages; the default elsewhere.
#             Needs root (mmdebstrap, chroot) and mmdebstrap on the host.
#   --kver    kernel release (default: the headers' kernel.release; --root: 7.3.4+deb13-amd64;
#             --host without --kdir: uname -r)
#   --kdir    the headers (default /lib/modules/VER/build)
#   --ksrc    the source tarball (default /usr/src/linux-source-SERIES.tar.xz)
#   --src     the module source: a directory with Kbuild, kmod/, core/src/, include/
#             (default: this repository)
#   --out     where the module goes (default target/kmod/distro-VER/dm_remap.ko in the repository)
#   --cache   where the rebuilt kernel tree and the module's build tree live
#             (default $CACHE/distro/VER, $CACHE = ${DMREMAP_CACHE:-~/.cache/dm-remap})
# Prints the path of the module on success.
# lib.sh names the test kernels' bindgen BINDGEN: keep the caller's.
user_bindgen=${BINDGEN:-}
source "$(dirname "$0")/lib.sh"

# Bump when the recipe changes in a way the key below does not see.
RECIPE=1
DEFAULT_KVER=7.3.4+deb13-amd64
DEBIAN=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

mode= kver= kdir= ksrc= src=$ROOT out= cache=
while [ $# -gt 0 ]; do
	case "$1" in
	--host) mode=host; shift ;;
	--root) mode=root; shift ;;
	--kver) kver=$2; shift 2 ;;
	--kdir) kdir=$2; shift 2 ;;
	--ksrc) ksrc=$2; shift 2 ;;
	--src) src=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	*) die "unknown argument $1 (see the header of $0)" ;;
	esac
done
if [ -z "$mode" ]; then
	if . /etc/os-release 2>/dev/null && [ "${ID:-}" = debian ] && [ "${VERSION_ID:-}" = 13 ]; then
		mode=host
	else
		mode=root
	fi
fi
if [ -z "$kver" ]; then
	if [ -n "$kdir" ] && [ -f "$kdir/include/config/kernel.release" ]; then
		kver=$(cat "$kdir/include/config/kernel.release")
	elif [ "$mode" = root ]; then
		kver=$DEFAULT_KVER
	else
		kver=$(uname -r)
	fi
fi
case "$kver" in *[!A-Za-z0-9.+_~-]*|'') die "bad kernel version '$kver'" ;; esac
series=$(echo "$kver" | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
[ -n "$series" ] || die "cannot read a version series from '$kver'"
cache=${cache:-$CACHE/distro/$kver}
out=${out:-$ROOT/target/kmod/distro-$kver/dm_remap.ko}
for f in Kbuild kmod/Kbuild kmod/gen-bindings.sh include/dm_remap.h core/src/lib.rs; do
	[ -f "$src/$f" ] || die "--src $src has no $f: not a dm-remap module source"
done
mkdir -p "$cache" "$(dirname "$out")"
src=$(cd "$src" && pwd) cache=$(cd "$cache" && pwd) out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

# ---------------------------------------------------------------------------------------------
# --root: make (once) a Debian 13 root with the kernel's toolchain, headers and source, then run
# this script in it with --host. The root is keyed by the package list and the kernel version.
if [ "$mode" = root ]; then
	[ "$(id -u)" = 0 ] || die "--root needs root (mmdebstrap and chroot); on Debian 13 use --host"
	command -v mmdebstrap >/dev/null || die "mmdebstrap missing (apt-get install mmdebstrap)"
	pkgs="rustc,rust-src,bindgen,gcc-14,make,flex,bison,bc,libelf-dev,libssl-dev,libclang-dev"
	pkgs+=",dwarves,python3,xz-utils,kmod,openssl,linux-headers-$kver/trixie-backports"
	pkgs+=",linux-source-$series/trixie-backports"
	key=$(printf '%s\n' "recipe $RECIPE" "$pkgs" "$DEBIAN" | sha256sum | cut -c1-12)
	rootdir=$cache/root
	make_root() {
		rm -rf "$rootdir" "$rootdir.tmp"
		mmdebstrap --variant=minbase --include="$pkgs" trixie "$rootdir.tmp" \
			"deb $DEBIAN trixie main" "deb $DEBIAN trixie-backports main" >"$cache/mmdebstrap.log" 2>&1 \
			|| { tail -n 30 "$cache/mmdebstrap.log"; die "mmdebstrap failed ($cache/mmdebstrap.log)"; }
		echo "$key" > "$rootdir.tmp/.dmremap-root"
		mv "$rootdir.tmp" "$rootdir"
	}
	exec 9>"$cache/root.lock"
	flock 9
	if [ "$(cat "$rootdir/.dmremap-root" 2>/dev/null)" != "$key" ]; then
		stage "distro-root" make_root
	fi
	# The module source goes in read-only, the output directory and the cache writable; the
	# mounts live in a private mount namespace and vanish with it.
	# The repository (for this script) and the module source go in read-only, the output
	# directory and the cache writable; the mounts live in a private mount namespace.
	mkdir -p "$rootdir/dmr/repo" "$rootdir/dmr/src" "$rootdir/dmr/out" "$rootdir/dmr/cache"
	inner=(/dmr/repo/scripts/build-distro-kmod.sh --host --kver "$kver" --src /dmr/src
		--out "/dmr/out/$(basename "$out")" --cache /dmr/cache)
	[ -n "$kdir" ] && die "--kdir applies to --host builds (the root has the headers of --kver)"
	[ -n "$ksrc" ] && die "--ksrc applies to --host builds (the root has linux-source-$series)"
	unshare --mount --propagation private -- bash -euo pipefail -c '
		r=$1 repo=$2 src=$3 outdir=$4 cache=$5; shift 5
		mount --bind "$repo" "$r/dmr/repo"; mount -o remount,bind,ro "$r/dmr/repo"
		mount --bind "$src" "$r/dmr/src"; mount -o remount,bind,ro "$r/dmr/src"
		mount --bind "$outdir" "$r/dmr/out"
		mount --bind "$cache" "$r/dmr/cache"
		mount -t proc proc "$r/proc"
		mount --rbind /dev "$r/dev"
		exec chroot "$r" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
			DMREMAP_CACHE=/dmr/cache/.cache "$@"
	' - "$rootdir" "$ROOT" "$src" "$(dirname "$out")" "$cache" "${inner[@]}" 9>&- >&2 \
		|| die "module build in the Debian 13 root failed"
	echo "$out"
	exit 0
fi

# ---------------------------------------------------------------------------------------------
# --host
kdir=${kdir:-/lib/modules/$kver/build}
ksrc=${ksrc:-/usr/src/linux-source-$series.tar.xz}
[ -f "$kdir/.config" ] || die "no kernel headers at $kdir (install linux-headers-$kver)"
[ -f "$kdir/Module.symvers" ] || die "$kdir has no Module.symvers"
[ -f "$ksrc" ] || die "no kernel source $ksrc (install linux-source-$series)"
grep -q '^CONFIG_RUST=y' "$kdir/.config" || die "kernel $kver was not built with CONFIG_RUST=y"
hdr_release=$(cat "$kdir/include/config/kernel.release" 2>/dev/null || true)
[ "$hdr_release" = "$kver" ] || die "headers at $kdir are for '$hdr_release', not $kver"

# bindgen finds libclang by itself unless LIBCLANG_PATH points elsewhere (the test kernels' LLVM).
if [ -n "${LIBCLANG_PATH:-}" ] && [ ! -d "$LIBCLANG_PATH" ]; then unset LIBCLANG_PATH; fi
cfgval() { sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$kdir/.config"; }
# The kernel's compilers, as its .config recorded them.
want_rustc=$(cfgval CONFIG_RUSTC_VERSION_TEXT)
want_cc=$(cfgval CONFIG_CC_VERSION_TEXT)
RUSTC=${RUSTC:-rustc}
BINDGEN=${user_bindgen:-bindgen}
CC=${CC:-$(echo "$want_cc" | cut -d' ' -f1)}
grep -q '^CONFIG_CC_IS_CLANG=y' "$kdir/.config" && die "kernel $kver was built with clang: this script handles GCC-built kernels"
have_rustc=$("$RUSTC" --version 2>/dev/null) || die "no rustc ($RUSTC)"
[ "$have_rustc" = "$want_rustc" ] || die "kernel $kver was built with '$want_rustc' but $RUSTC is '$have_rustc': Rust has no stable ABI, the same rustc is needed"
have_cc=$("$CC" --version 2>/dev/null | head -n1) || die "no C compiler $CC (the kernel used '$want_cc')"
[ "$have_cc" = "$want_cc" ] || log "warning: kernel built with '$want_cc', using '$have_cc'"
"$BINDGEN" --version >/dev/null 2>&1 || die "no bindgen ($BINDGEN)"
# A triplet-prefixed compiler (Debian: x86_64-linux-gnu-gcc-14) means binutils with that prefix too.
cross=
case "$CC" in *-gcc|*-gcc-[0-9]*) cross=${CC%gcc*} ;; esac
KVARS=(CC="$CC" HOSTCC="$CC" CROSS_COMPILE="$cross" RUSTC="$RUSTC" HOSTRUSTC="$RUSTC" BINDGEN="$BINDGEN"
	KERNELRELEASE="$kver")

# The rebuilt kernel tree, keyed by everything that decides the crate hashes.
tree=$cache/linux
key=$( {
	echo "recipe $RECIPE $kver"
	sha256sum <"$kdir/.config"; sha256sum <"$kdir/Module.symvers"
	stat -c '%s %Y' "$ksrc"; "$RUSTC" -vV; "$BINDGEN" --version; echo "$have_cc"
} | sha256sum | cut -c1-12)
prepare_tree() {
	local t=$tree.tmp
	rm -rf "$tree" "$t"
	mkdir -p "$t"
	tar -C "$t" --strip-components=1 -xf "$ksrc"
	cp "$kdir/.config" "$kdir/Module.symvers" "$t/"
	make -C "$t" "${KVARS[@]}" olddefconfig >"$cache/prepare.log" 2>&1 \
		|| { tail -n 30 "$cache/prepare.log"; die "olddefconfig failed ($cache/prepare.log)"; }
	# olddefconfig must not change a thing: a different .config means a different toolchain
	# (compiler versions are config symbols) or source, and other crate hashes.
	if ! diff <(grep -v '^#' "$kdir/.config" | grep .) <(grep -v '^#' "$t/.config" | grep .) >"$cache/config.diff"; then
		cat "$cache/config.diff" >&2
		die "Debian's .config changed under olddefconfig with this source/toolchain (above: < headers, > rebuilt)"
	fi
	make -C "$t" "${KVARS[@]}" -j"$(nproc)" prepare >>"$cache/prepare.log" 2>&1 \
		|| { tail -n 30 "$cache/prepare.log"; die "make prepare failed ($cache/prepare.log)"; }
	make -C "$t" "${KVARS[@]}" -j"$(nproc)" modules_prepare >>"$cache/prepare.log" 2>&1 \
		|| { tail -n 30 "$cache/prepare.log"; die "make modules_prepare failed ($cache/prepare.log)"; }
	[ -f "$t/rust/libkernel.rmeta" ] || die "make prepare built no rust/libkernel.rmeta ($cache/prepare.log)"
	# The crate hashes: every Rust symbol the distribution kernel exports must be defined, under
	# the same mangled name, by the rebuilt crates.
	awk '$2 ~ /^_R/ {print $2}' "$kdir/Module.symvers" | sort -u >"$cache/rust-exports"
	nm --defined-only "$t"/rust/*.o | awk '$3 ~ /^_R/ {print $3}' | sort -u >"$cache/rust-rebuilt"
	comm -23 "$cache/rust-exports" "$cache/rust-rebuilt" >"$cache/rust-missing"
	if [ -s "$cache/rust-missing" ]; then
		head -n 20 "$cache/rust-missing" | sed 's/^/  exported by the kernel, not rebuilt: /' >&2
		die "$(wc -l <"$cache/rust-missing") of $(wc -l <"$cache/rust-exports") Rust symbols of $kver differ from the rebuilt crates (other crate hashes: another rustc, flags or source; list in $cache/rust-missing)"
	fi
	log "all $(wc -l <"$cache/rust-exports") Rust symbols $kver exports match the rebuilt crates"
	# vermagic: the headers' release strings (KERNELRELEASE= above should already give them).
	cp "$kdir/include/generated/utsrelease.h" "$t/include/generated/utsrelease.h"
	cp "$kdir/include/config/kernel.release" "$t/include/config/kernel.release"
	# The headers' vmlinux (when shipped) is what module BTF is generated against.
	if [ -f "$kdir/vmlinux" ]; then cp "$kdir/vmlinux" "$t/vmlinux"; fi
	echo "$key" > "$t/.dmremap-key"
	mv "$t" "$tree"
}
exec 9>"$cache/tree.lock"
flock 9
if [ "$(cat "$tree/.dmremap-key" 2>/dev/null)" != "$key" ]; then
	stage "distro-tree-$kver" prepare_tree
fi

# The module's build tree: a copy of its sources, files copied only when they changed (with a
# new mtime, so make rebuilds their objects even when the changed source is older than them).
bdir=$cache/kmod-build
mkdir -p "$bdir"
(cd "$src" && { echo Kbuild; ls kmod/*.rs kmod/*.c kmod/*.h kmod/Kbuild kmod/gen-bindings.sh core/src/*.rs core/src/metadata/*.rs include/*.h; }) |
while read -r f; do
	if ! cmp -s "$src/$f" "$bdir/$f"; then
		mkdir -p "$bdir/$(dirname "$f")"
		cp "$src/$f" "$bdir/$f"
	fi
done
(cd "$bdir" && find kmod core include -type f \( -name '*.rs' -o -name '*.c' -o -name '*.h' \) ! -path 'kmod/generated/*' ! -name '*.mod.c') |
while read -r f; do [ -e "$src/$f" ] || rm -f "$bdir/$f"; done
if [ "$(cat "$bdir/.built-for" 2>/dev/null)" != "$key" ]; then
	make -C "$tree" M="$bdir" "${KVARS[@]}" clean >/dev/null 2>&1 || true
	rm -rf "$bdir/kmod/generated"
fi
build() {
	make -C "$tree" M="$bdir" "${KVARS[@]}" -j"$(nproc)" modules >"$bdir/build.log" 2>&1 \
		|| { cat "$bdir/build.log" >&2; die "module build failed ($bdir/build.log)"; }
	if grep -E '^(warning|error)|objtool' "$bdir/build.log" >/dev/null; then
		grep -E -A8 '^(warning|error)|objtool' "$bdir/build.log" >&2
	fi
}
stage "kmod-distro-$kver" build
echo "$key" > "$bdir/.built-for"
ko=$bdir/kmod/dm_remap.ko

# Every symbol the module imports must be exported by the kernel under exactly that name (for
# Rust symbols the name carries the crate hash): modpost already refused unknown ones; say so.
vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null || strings "$ko" | sed -n 's/^vermagic=//p')
case "$vermagic" in "$kver "*) ;; *) die "module vermagic '$vermagic' does not start with $kver" ;; esac
nm -u "$ko" | awk '{print $2}' | sort -u >"$bdir/imports"
awk '{print $2}' "$kdir/Module.symvers" | sort -u >"$bdir/exports"
missing=$(comm -23 "$bdir/imports" "$bdir/exports")
n_rust=$(grep -c '^_R' "$bdir/imports" || true)
if [ -n "$missing" ]; then
	# Not exported by name: either a symbol vmlinux provides without export, or a crate hash
	# that differs from the distribution kernel's.
	echo "$missing" | sed 's/^/  not in Module.symvers: /' >&2
	die "the module imports symbols kernel $kver does not export"
fi
log "module for $kver: vermagic '$vermagic', $(wc -l <"$bdir/imports") imports ($n_rust Rust symbols), all in $kdir/Module.symvers"
cp "$ko" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
