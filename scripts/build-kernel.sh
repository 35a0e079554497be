#!/usr/bin/env bash
# build-kernel.sh FLAVOUR (release|debug): configure and build the test kernel into the cache.
# A build whose key (kernel version + config fragments + toolchain) is cached is not rebuilt.
# Prints the build directory on stdout.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/kenv.sh"

flavour=${1:?usage: build-kernel.sh release|debug}
[ -f "$ROOT/scripts/kconfig/$flavour.config" ] || die "unknown kernel flavour '$flavour'"
[ -f "$KSRC/Makefile" ] || "$ROOT/scripts/fetch-kernel.sh" >/dev/null
out=$(kernel_dir "$flavour")
if [ -f "$out/.dmremap-built" ]; then
	log "kernel $flavour: cached at $out"
	echo "$out"; exit 0
fi

rm -rf "$out"; mkdir -p "$out"
kmake() { make -C "$KSRC" O="$out" "${KMAKEVARS[@]}" "$@"; }

configure() {
	kmake tinyconfig >"$out/config.log" 2>&1
	cat "$ROOT/scripts/kconfig/base.config" "$ROOT/scripts/kconfig/$flavour.config" > "$out/fragment.config"
	"$KSRC/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$out/fragment.config" >>"$out/config.log" 2>&1
	kmake olddefconfig >>"$out/config.log" 2>&1
	# olddefconfig silently drops symbols whose dependencies are unmet: check every one.
	local bad=0 line sym val
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			sym=${line%%=*}; val=${line#*=}
			grep -qx "$sym=$val" "$out/.config" || { echo "  $sym wanted $val, got: $(grep -E "^(# )?$sym[= ]" "$out/.config" || echo absent)"; bad=1; } ;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }; sym=${sym%% *}
			! grep -q "^$sym=" "$out/.config" || { echo "  $sym wanted unset, got: $(grep "^$sym=" "$out/.config")"; bad=1; } ;;
		esac
	done < "$out/fragment.config"
	[ "$bad" = 0 ] || die "kernel config for $flavour lost symbols (see above; $out/config.log)"
	kmake rustavailable >>"$out/config.log" 2>&1 || { tail "$out/config.log"; die "Rust is not available to the kernel build"; }
}
build() {
	kmake -j"$(nproc)" all >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; die "kernel $flavour build failed ($out/build.log)"; }
}
stage "kernel-$flavour-config" configure
stage "kernel-$flavour-build" build
touch "$out/.dmremap-built"
# Keep only the newest build of each flavour.
for d in "$CACHE"/kernel/"$flavour"-*; do [ "$d" = "$out" ] || rm -rf "$d"; done
echo "$out"
