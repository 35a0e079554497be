#!/usr/bin/env bash
# fetch-distro-kernel.sh [KVER]: Debian's unmodified kernel image and a set of its own modules for
# the VM tests, fetched from trixie-backports the private-apt way (scripts/fetch-kernel.sh), never
# through the system's apt configuration.
# Result, cached in $CACHE/distro/KVER/kernel/ and printed: a directory with
#   vmlinuz        the kernel image of linux-binary-KVER, as shipped
#   modules/       guest tree: lib/modules/KVER/... with the modules the VM tests need and their
#                  dependencies, xz-decompressed (busybox insmod does not read .ko.xz), plus
#                  etc/dmr-modules: their paths in load order (dependencies first)
source "$(dirname "$0")/lib.sh"

kver=${1:-7.3.4+deb13-amd64}
case "$kver" in *[!A-Za-z0-9.+_~-]*|'') die "bad kernel version '$kver'" ;; esac
# The block and device-mapper drivers the scenarios use (those Debian builds as modules; names
# Debian's kernel has built in are skipped). dm-dust is not in Debian's kernel.
WANT=(dm-mod dm-flakey dm-log-writes dm-delay dm-thin-pool nvme virtio_blk virtio_pci
	virtio-rng ext4 null_blk loop)
out=$CACHE/distro/$kver/kernel
key=$(printf '%s\n' "$kver" "${WANT[@]}" | cat - "$0" | sha256sum | cut -c1-12)
if [ "$(cat "$out/.dmremap-key" 2>/dev/null)" = "$key" ]; then
	echo "$out"
	exit 0
fi

APTDIR=$CACHE/distro/apt
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
cat > "$APTDIR/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
APTOPTS=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=-"
	-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
	-o "Dir::State::status=/dev/null" -o "APT::Default-Release=" -o "Debug::NoLocking=1")
fetch() {
	log "updating private package lists (trixie, trixie-backports)"
	apt-get "${APTOPTS[@]}" update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log"; die "apt-get update failed"; }
	cd "$APTDIR/debs"
	rm -f ./*.deb
	apt-get "${APTOPTS[@]}" download "linux-binary-$kver" "linux-modules-$kver" >"$APTDIR/download.log" 2>&1 \
		|| { cat "$APTDIR/download.log"; die "could not download linux-binary-$kver / linux-modules-$kver"; }
	cd - >/dev/null
}
stage "distro-kernel-fetch" fetch

tmp=$(mktemp -d "$CACHE/distro/x.XXXX")
trap 'rm -rf "$tmp"' EXIT
for d in "$APTDIR"/debs/linux-binary-"$kver"_*.deb "$APTDIR"/debs/linux-modules-"$kver"_*.deb; do
	dpkg-deb -x "$d" "$tmp/pkg"
done
mdir=$tmp/pkg/usr/lib/modules/$kver
[ -f "$mdir/vmlinuz" ] || mdir=$tmp/pkg/lib/modules/$kver
[ -d "$mdir/kernel" ] || die "no modules for $kver in linux-modules-$kver"
vmlinuz=$mdir/vmlinuz
[ -f "$vmlinuz" ] || vmlinuz=$(ls "$tmp"/pkg/boot/vmlinuz-"$kver" 2>/dev/null) || die "no vmlinuz in linux-binary-$kver"

# Module name (dashes as underscores) -> path relative to the modules directory.
declare -A path
while read -r f; do
	n=$(basename "$f"); n=${n%.ko*}; path[${n//-/_}]=$f
done < <(cd "$mdir" && find kernel -name '*.ko*')
declare -A done_
order=()
add() { # add NAME: dependencies first, each once
	local n=${1//-/_} d
	[ -n "${done_[$n]:-}" ] && return 0
	done_[$n]=1
	for d in $(modinfo -F depends "$mdir/${path[$n]}" | tr ',' ' '); do add "$d"; done
	order+=("$n")
}
for m in "${WANT[@]}"; do
	n=${m//-/_}
	if [ -z "${path[$n]:-}" ]; then
		log "note: $m is not a module of $kver (built in, or not configured)"
		continue
	fi
	add "$n"
done
mkdir -p "$tmp/modules/etc" "$tmp/modules/lib/modules/$kver"
for n in "${order[@]}"; do
	rel=${path[$n]} dst=$tmp/modules/lib/modules/$kver/${path[$n]%.xz}
	mkdir -p "$(dirname "$dst")"
	case "$rel" in
	*.xz) xz -dc "$mdir/$rel" > "$dst" ;;
	*.zst) zstd -qdc "$mdir/$rel" > "$dst" ;;
	*) cp "$mdir/$rel" "$dst" ;;
	esac
	echo "/lib/modules/$kver/${rel%.xz}" >> "$tmp/modules/etc/dmr-modules"
done
rm -rf "$out"
mkdir -p "$out"
cp "$vmlinuz" "$out/vmlinuz"
mv "$tmp/modules" "$out/modules"
echo "$key" > "$out/.dmremap-key"
log "Debian kernel $kver: $(wc -l < "$out/modules/etc/dmr-modules") modules ($(du -sh "$out/modules" | cut -f1))"
echo "$out"
