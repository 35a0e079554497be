#!/usr/bin/env bash
# Install what the build and the VM tests need on a Debian 12 machine. Idempotent: packages already
# present are not reinstalled and apt-get update runs only when something is missing.
source "$(dirname "$0")/lib.sh"

PKGS=(
	# kernel toolchain: rustc-web ships /usr/bin/rustc with the matching library source
	rustc-web rust-web-src clang-22 lld-22 llvm-22 libclang-22-dev
	flex bison bc libelf-dev libssl-dev cpio kmod dwarves make gcc python3 xz-utils
	# the userspace index test (make index-test): gcc's sanitizers, the C library headers
	libc6-dev
	# VM and guest userland
	qemu-system-x86 qemu-utils busybox-static dmsetup fio nvme-cli e2fsprogs coreutils
	# userspace build: the devicemapper crate links libdevmapper
	libdevmapper-dev pkg-config
	# make deb (dpkg-shlibdeps for the package's Depends)
	dpkg-dev
	# the distribution-kernel leg (make test-distro) and make test-boot: Debian 13 roots
	mmdebstrap
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BINDGEN_WANT=${BINDGEN_WANT:-0.73}
if ! "$BINDGEN" --version 2>/dev/null | grep -q "bindgen $BINDGEN_WANT"; then
	log "installing bindgen-cli $BINDGEN_WANT into $TOOLS"
	cargo install --locked --root "$TOOLS" bindgen-cli --version "~$BINDGEN_WANT" >/dev/null 2>&1 \
		|| cargo install --locked --root "$TOOLS" bindgen-cli --version "~$BINDGEN_WANT"
fi
# promtool checks the shipped Prometheus alert rules: taken from Debian's prometheus package into
# the cache, without installing (or starting) the Prometheus server.
PROMTOOL=$TOOLS/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
	log "fetching promtool (Debian package prometheus) into $TOOLS"
	pt=$(mktemp -d)
	if (cd "$pt" && apt-get download -qq prometheus >/dev/null 2>&1); then
		dpkg-deb -x "$pt"/prometheus_*.deb "$pt/x" && install -D -m 0755 "$pt/x/usr/bin/promtool" "$PROMTOOL"
	else
		log "warning: could not download the prometheus package; the alert rule check will be skipped"
	fi
	rm -rf "$pt"
fi
log "dependencies ready ($("$BINDGEN" --version), $($KRUSTC --version | cut -d' ' -f1-2))"
