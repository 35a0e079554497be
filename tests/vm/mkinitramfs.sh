#!/usr/bin/env bash
# mkinitramfs.sh OUT.cpio [EXTRA_FILE=GUEST_PATH ...]
# Build the guest initramfs: a cached base archive (busybox and the Debian tools the scenarios use,
# with their libraries) followed by an overlay archive with the project's files. The kernel unpacks
# concatenated newc archives in order.
source "$(dirname "$0")/../../scripts/lib.sh"

out=${1:?usage: mkinitramfs.sh OUT.cpio [HOST_FILE=GUEST_PATH ...]}; shift

# Host binaries copied into the guest with their shared libraries.
BINS=(
	/usr/sbin/dmsetup /usr/bin/fio /usr/sbin/nvme
	/usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/dumpe2fs
	/usr/bin/dd /usr/bin/taskset /usr/bin/ionice /usr/sbin/blockdev /usr/sbin/blkdiscard
)

copy_bin() { # ROOT SRC DST: copy a binary and the shared libraries it needs
	local root=$1 src=$2 dst=$3 lib
	[ -e "$src" ] || die "missing $src (run scripts/install-deps.sh)"
	mkdir -p "$root$(dirname "$dst")"
	cp -L "$src" "$root$dst"
	ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

key=$( {
	cat "$0"
	dpkg-query -W busybox-static dmsetup fio nvme-cli e2fsprogs coreutils util-linux libc6 2>/dev/null
} | sha256sum | cut -c1-12)
base=$CACHE/initramfs/base-$key.cpio
if [ ! -f "$base" ]; then
	log "building base initramfs ($base)"
	stagedir=$(mktemp -d)
	chmod 755 "$stagedir"
	trap 'rm -rf "$stagedir"' EXIT
	mkdir -p "$stagedir"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,dev,proc,sys,tmp,mnt,run,root,etc,var/tmp}
	cp /bin/busybox "$stagedir/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ -e "$stagedir/bin/$applet" ] || ln -s busybox "$stagedir/bin/$applet"
	done
	for b in "${BINS[@]}"; do copy_bin "$stagedir" "$b" "$b"; done
	ln -sf mke2fs "$stagedir/usr/sbin/mkfs.ext4"
	# GNU dd: busybox dd falls back to buffered I/O on unaligned buffers.
	rm -f "$stagedir/bin/dd"
	echo 'root:x:0:0:root:/root:/bin/sh' > "$stagedir/etc/passwd"
	echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$stagedir/etc/passwd"
	echo 'root:x:0:' > "$stagedir/etc/group"
	touch "$stagedir/etc/mtab"
	mkdir -p "$(dirname "$base")"
	(cd "$stagedir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$base.tmp"
	mv "$base.tmp" "$base"
	rm -rf "$stagedir"; trap - EXIT
	# Keep only the current base.
	for f in "$CACHE"/initramfs/base-*.cpio; do [ "$f" = "$base" ] || rm -f "$f"; done
fi

# Overlay: /init, scenarios, the module and our binaries, plus extra files from the arguments.
ov=$(mktemp -d)
chmod 755 "$ov"
trap 'rm -rf "$ov"' EXIT
mkdir -p "$ov/scenarios" "$ov/lib/modules" "$ov/usr/local/bin"
install -m 0755 "$ROOT/tests/vm/init" "$ov/init"
cp "$ROOT"/tests/scenarios/*.sh "$ROOT"/tests/scenarios/*.inc "$ov/scenarios/"
for spec in "$@"; do
	src=${spec%%=*}; dst=${spec#*=}
	[ -e "$src" ] || die "missing $src"
	case "$dst" in
	/usr/local/bin/*) copy_bin "$ov" "$src" "$dst" ;;
	*) mkdir -p "$ov$(dirname "$dst")"; cp -L "$src" "$ov$dst" ;;
	esac
done
# Libraries the base already has need not be repeated; the later copy would win anyway.
(cd "$ov" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out.overlay"
cat "$base" "$out.overlay" > "$out"
rm -f "$out.overlay"
