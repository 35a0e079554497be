#!/usr/bin/env bash
# install.sh [--tools] [--dkms] [--config]: install the project under $DESTDIR$PREFIX.
#   --tools   binaries (sbin), systemd units, the udev rule, modules-load.d, completions, man
#             pages, docs and the example configuration (share/doc/dm-remap/examples)
#   --config  also /etc/dmremapd/dmremapd.toml from the example, unless one exists
#   --dkms    the module source for DKMS: /usr/src/dm-remap-<version>/ with dkms.conf
# Environment: DESTDIR (default empty), PREFIX (default /usr), BINDIR (default target/release:
# where dmremap and dmremapd were built). Paths inside units and the udev rule follow PREFIX.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
BINDIR=${BINDIR:-$ROOT/target/release}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
D=$DESTDIR$PREFIX

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# put MODE SRC DST: install one file, creating its directory.
put() { install -D -m "$1" "$2" "$3"; }
# subst SRC: the file with the paths of our binaries (/usr/sbin/dmremap, dmremapd) in PREFIX.
subst() { sed "s|/usr/sbin/dmremap|$PREFIX/sbin/dmremap|g" "$1"; }

tools() {
	local b t
	for b in dmremap dmremapd; do
		[ -x "$BINDIR/$b" ] || die "$BINDIR/$b missing: run make userspace first"
		put 0755 "$BINDIR/$b" "$D/sbin/$b"
	done
	t=$(mktemp -d)
	trap 'rm -rf "$t"' RETURN
	subst "$ROOT/userspace/daemon/dmremapd.service" >"$t/dmremapd.service"
	subst "$ROOT/dist/systemd/dmremap-activate@.service" >"$t/dmremap-activate@.service"
	subst "$ROOT/dist/systemd/dmremap-activate.service" >"$t/dmremap-activate.service"
	subst "$ROOT/dist/udev/69-dm-remap.rules" >"$t/69-dm-remap.rules"
	put 0644 "$t/dmremapd.service" "$D/lib/systemd/system/dmremapd.service"
	put 0644 "$t/dmremap-activate@.service" "$D/lib/systemd/system/dmremap-activate@.service"
	put 0644 "$t/dmremap-activate.service" "$D/lib/systemd/system/dmremap-activate.service"
	put 0644 "$t/69-dm-remap.rules" "$D/lib/udev/rules.d/69-dm-remap.rules"
	put 0644 "$ROOT/dist/modules-load.d/dm_remap.conf" "$D/lib/modules-load.d/dm_remap.conf"

	# Completions and manual pages come from the binaries' own command definitions.
	for b in dmremap dmremapd; do
		"$BINDIR/$b" completions bash >"$t/$b.bash"
		"$BINDIR/$b" completions zsh >"$t/_$b"
		"$BINDIR/$b" completions fish >"$t/$b.fish"
		put 0644 "$t/$b.bash" "$D/share/bash-completion/completions/$b"
		put 0644 "$t/_$b" "$D/share/zsh/vendor-completions/_$b"
		put 0644 "$t/$b.fish" "$D/share/fish/vendor_completions.d/$b.fish"
	done
	"$BINDIR/dmremap" manpage --dir "$t/man1"
	"$BINDIR/dmremapd" manpage --dir "$t/man8"
	local s p
	for s in 1 8; do
		mkdir -p "$D/share/man/man$s"
		for p in "$t/man$s"/*."$s"; do
			gzip -9n <"$p" >"$D/share/man/man$s/$(basename "$p").gz"
			chmod 0644 "$D/share/man/man$s/$(basename "$p").gz"
		done
	done

	local doc=$D/share/doc/dm-remap
	put 0644 "$ROOT/README.md" "$doc/README.md"
	put 0644 "$ROOT/userspace/daemon/README.md" "$doc/dmremapd.md"
	put 0644 "$ROOT/docs/runbook.md" "$doc/runbook.md"
	put 0644 "$ROOT/userspace/daemon/dmremapd.toml" "$doc/examples/dmremapd.toml"
	put 0644 "$ROOT/dist/prometheus/dm-remap.rules.yml" "$doc/examples/prometheus/dm-remap.rules.yml"
}

config() {
	local f=$DESTDIR/etc/dmremapd/dmremapd.toml
	if [ -e "$f" ]; then
		echo "install.sh: keeping the existing $f" >&2
	else
		put 0644 "$ROOT/userspace/daemon/dmremapd.toml" "$f"
	fi
}

# The module source as DKMS wants it: everything `make kmod KDIR=...` reads.
dkms() {
	local src=$DESTDIR/usr/src/dm-remap-$VERSION f
	mkdir -p "$src"
	(cd "$ROOT" && ls Makefile Kbuild Cargo.toml kmod/*.rs kmod/*.c kmod/*.h kmod/Kbuild kmod/gen-bindings.sh \
		core/src/*.rs core/src/metadata/*.rs include/*.h scripts/lib.sh scripts/kenv.sh scripts/build-kmod.sh scripts/dkms-build.sh scripts/build-distro-kmod.sh) |
	while read -r f; do
		install -D -m "$([ -x "$ROOT/$f" ] && echo 0755 || echo 0644)" "$ROOT/$f" "$src/$f"
	done
	sed "s/@VERSION@/$VERSION/" "$ROOT/dist/dkms/dkms.conf" >"$src/dkms.conf"
	chmod 0644 "$src/dkms.conf"
}

[ $# -gt 0 ] || set -- --tools
for a in "$@"; do
	case "$a" in
	--tools) tools ;;
	--config) config ;;
	--dkms) dkms ;;
	*) die "unknown option $a" ;;
	esac
done
