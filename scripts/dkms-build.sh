#!/usr/bin/env bash
# dkms-build.sh KERNELVER KDIR: the DKMS build hook (dist/dkms/dkms.conf). Builds dm_remap.ko
# for kernel KERNELVER into target/kmod/host/.
# - KDIR with the kernel's Rust metadata (rust/libkernel.rmeta: a full build tree): `make kmod
#   KDIR=...`. A Rust module must be built with the rustc, bindgen and LLVM= setting the kernel
#   was built with: set them (RUSTC=, HOSTRUSTC=, RUSTDOC=, BINDGEN=, LLVM=) in
#   /etc/dm-remap/kbuild.conf, which is read when it exists (shell variable assignments).
# - KDIR without it (a distribution headers package such as Debian 13's linux-headers-7.3.x):
#   scripts/build-distro-kmod.sh --host rebuilds the metadata from the matching linux-source
#   package with the headers' .config and the kernel's rustc, cached in
#   /var/cache/dm-remap/KERNELVER (a few minutes once per kernel, seconds afterwards).
set -euo pipefail
kver=${1:?usage: dkms-build.sh KERNELVER KDIR}
kdir=${2:?usage: dkms-build.sh KERNELVER KDIR}
cd "$(dirname "$0")/.."
conf=${DMREMAP_KBUILD_CONF:-/etc/dm-remap/kbuild.conf}
if [ -r "$conf" ]; then
	set -a
	# shellcheck disable=SC1090
	. "$conf"
	set +a
fi
grep -q '^CONFIG_RUST=y' "$kdir/.config" 2>/dev/null ||
	{ echo "dm-remap: kernel $kver ($kdir) has no CONFIG_RUST=y: the module cannot be built for it" >&2; exit 1; }
if [ -f "$kdir/rust/libkernel.rmeta" ]; then
	make kmod KDIR="$kdir"
else
	HOME=${HOME:-/root} scripts/build-distro-kmod.sh --host --kver "$kver" --kdir "$kdir" \
		--out target/kmod/host/dm_remap.ko --cache "/var/cache/dm-remap/$kver"
fi
test -f target/kmod/host/dm_remap.ko
