#!/usr/bin/env bash
# build-deb.sh: Debian packages of the project with dpkg-deb, into target/deb/:
#   dm-remap_<version>_<arch>.deb        dmremap, dmremapd, systemd units, udev rule,
#                                         modules-load.d, completions, man pages, docs,
#                                         /etc/dmremapd/dmremapd.toml (a conffile)
#   dm-remap-dkms_<version>_all.deb      the module source under /usr/src/dm-remap-<version>,
#                                         built and installed by DKMS for each kernel
# Expects target/release/dmremap and dmremapd (make deb builds them first).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
ARCH=$(dpkg --print-architecture)
OUT=$ROOT/target/deb
MAINTAINER="dm-remap developers <dm-remap@localhost>"
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Common files of a package: copyright, changelog.
docs() { # ROOTDIR PACKAGE
	local d=$1/usr/share/doc/$2
	mkdir -p "$d"
	cat >"$d/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dm-remap
License: GPL-2.0-only

Files: *
License: GPL-2.0-only
 On Debian systems, the full text of the GNU General Public License version 2 can be found
 in /usr/share/common-licenses/GPL-2.
EOF
	printf '%s (%s) unstable; urgency=medium\n\n  * Package built from the source tree.\n\n -- %s  %s\n' \
		"$2" "$VERSION" "$MAINTAINER" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
		gzip -9n >"$d/changelog.gz"
	chmod 0644 "$d/copyright" "$d/changelog.gz"
}

# md5sums and Installed-Size of a package tree.
finish() { # ROOTDIR
	(cd "$1" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 -r md5sum) >"$1/DEBIAN/md5sums"
	chmod 0644 "$1/DEBIAN/md5sums"
	du -sk --exclude=DEBIAN "$1" | cut -f1
}

# --- dm-remap (tools) ----------------------------------------------------------------------
t=$work/dm-remap
DESTDIR=$t PREFIX=/usr "$ROOT/scripts/install.sh" --tools --config
# Debian ships binaries without debug information.
strip --strip-debug --remove-section=.comment "$t/usr/sbin/dmremap" "$t/usr/sbin/dmremapd"
# install.sh puts the docs in /usr/share/doc/dm-remap: the package's own doc directory.
docs "$t" dm-remap
mkdir -p "$t/DEBIAN"
depends=$(cd "$work" && mkdir -p debian && touch debian/control &&
	dpkg-shlibdeps -O "$t/usr/sbin/dmremap" "$t/usr/sbin/dmremapd" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || depends="libc6, libgcc-s1"
size=$(finish "$t")
# dmsetup: its udev rules (10-dm, 55-dm, 95-dm-notify) make /dev/mapper/NAME, the device unit
# systemd waits on for an fstab line, and complete the udev cookie dmremap waits on at resume.
cat >"$t/DEBIAN/control" <<EOF
Package: dm-remap
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends, dmsetup, kmod, udev
Recommends: dm-remap-dkms
Section: admin
Priority: optional
Homepage: https://localhost/dm-remap
Description: keep failing disks in service: dm-remap tools and health daemon
 dm-remap is a device-mapper target that moves a disk's bad blocks onto a spare device.
 This package holds the dmremap command (create, activate, inspect, events), the dmremapd
 health daemon (kernel events, NVMe health, scrubbing, Prometheus metrics), boot-time
 activation (udev rule and systemd units) and the documentation. The kernel module is
 in dm-remap-dkms.
EOF
echo /etc/dmremapd/dmremapd.toml >"$t/DEBIAN/conffiles"
cat >"$t/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		for u in dmremapd.service dmremap-activate.service; do
			deb-systemd-helper unmask "$u" >/dev/null || true
			deb-systemd-helper enable "$u" >/dev/null || true
		done
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null || true
		udevadm control --reload-rules >/dev/null 2>&1 || true
		systemctl try-restart dmremapd.service >/dev/null 2>&1 || true
	fi
fi
EOF
cat >"$t/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl stop dmremapd.service >/dev/null 2>&1 || true
fi
EOF
cat >"$t/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge dmremapd.service dmremap-activate.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null || true
	fi
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/dmremapd /var/log/dmremapd
fi
EOF
chmod 0755 "$t/DEBIAN/postinst" "$t/DEBIAN/prerm" "$t/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz --build "$t" "$OUT/dm-remap_${VERSION}_${ARCH}.deb" >/dev/null

# --- dm-remap-dkms ---------------------------------------------------------------------------
k=$work/dm-remap-dkms
DESTDIR=$k "$ROOT/scripts/install.sh" --dkms
docs "$k" dm-remap-dkms
mkdir -p "$k/DEBIAN"
size=$(finish "$k")
cat >"$k/DEBIAN/control" <<EOF
Package: dm-remap-dkms
Version: $VERSION
Architecture: all
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: dkms, make, gcc
Recommends: dm-remap, rustc, rust-src, bindgen, libclang-dev, dwarves, openssl
Suggests: linux-source-7.3
Section: kernel
Priority: optional
Homepage: https://localhost/dm-remap
Description: keep failing disks in service: dm-remap kernel module (DKMS source)
 The source of dm_remap.ko, the Rust device-mapper target "remap", built by DKMS for each
 installed kernel and again on kernel upgrades. The kernel must have CONFIG_RUST=y, and the
 module must be built with the kernel's own rustc and bindgen. For Debian 13's backports kernel
 (headers without Rust metadata) the build rebuilds that metadata from linux-source-7.3 with
 the kernel's rustc 1.85; for a kernel built from a full tree name the tools in
 /etc/dm-remap/kbuild.conf (RUSTC=, BINDGEN=, LLVM=), see README.md.
EOF
cat >"$k/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
	dkms add -m dm-remap -v $VERSION >/dev/null 2>&1 || true
	# A kernel the module cannot be built for does not fail the installation.
	dkms autoinstall >/dev/null 2>&1 || echo "dm-remap-dkms: the module was not built for every kernel (see dkms status)" >&2
fi
EOF
cat >"$k/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
dkms remove -m dm-remap -v $VERSION --all >/dev/null 2>&1 || true
EOF
chmod 0755 "$k/DEBIAN/postinst" "$k/DEBIAN/prerm"
dpkg-deb --root-owner-group -Zxz --build "$k" "$OUT/dm-remap-dkms_${VERSION}_all.deb" >/dev/null

ls -l "$OUT"/*.deb
