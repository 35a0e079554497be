# Kernel build settings shared by the kernel build and the module build. Source after lib.sh.
KLLVM=-22
export LIBCLANG_PATH=/usr/lib/llvm-22/lib
KMAKEVARS=(LLVM="$KLLVM" RUSTC="$KRUSTC" HOSTRUSTC="$KRUSTC" RUSTDOC="$KRUSTDOC" BINDGEN="$BINDGEN")
KSRC=$CACHE/src/linux-source-$KVER_SERIES
# Bump when the recipe changes in a way the config hash does not see.
KRECIPE=1

# kernel_key FLAVOUR: version + config + toolchain hash naming a cached build.
kernel_key() {
	local flavour=$1 ver
	ver=$(cat "$KSRC/.debian-version" 2>/dev/null || echo unknown)
	{
		echo "recipe $KRECIPE $ver"
		cat "$ROOT/scripts/kconfig/base.config" "$ROOT/scripts/kconfig/$flavour.config"
		"$KRUSTC" --version; clang$KLLVM --version | head -n1; "$BINDGEN" --version
	} | sha256sum | cut -c1-12
}
kernel_dir() { echo "$CACHE/kernel/$1-$KVER_SERIES-$(kernel_key "$1")"; }
