#!/usr/bin/env bash
# dkms-build.sh KERNELVER KDIR: the DKMS build hook (dist/dkms/dkms.conf). Builds dm_remap.ko
# for kernel KERNELVER from its build tree KDIR with `make kmod KDIR=...`, which leaves it in
# target/kmod/host/. A Rust module must be built with the rustc, bindgen and LLVM= setting the
# kernel was built with: set them (RUSTC=, HOSTRUSTC=, RUSTDOC=, BINDGEN=, LLVM=) in
# /etc/dm-remap/kbuild.conf, which is read when it exists (shell variable assignments).
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
make kmod KDIR="$kdir"
test -f target/kmod/host/dm_remap.ko
