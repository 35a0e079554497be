#!/usr/bin/env bash
# Fetch Debian's linux-source-$KVER_SERIES (trixie-backports) into the cache without touching the
# system's apt configuration: a private sources list, state and cache directory.
source "$(dirname "$0")/lib.sh"

SRCROOT=$CACHE/src
mkdir -p "$SRCROOT"
if ls -d "$SRCROOT"/linux-source-"$KVER_SERIES"/Makefile >/dev/null 2>&1; then
	echo "$SRCROOT/linux-source-$KVER_SERIES"
	exit 0
fi

APTDIR=$CACHE/apt
mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial"
cat > "$APTDIR/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
APTOPTS=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=-"
	-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
	-o "Dir::State::status=/dev/null" -o "APT::Default-Release=" -o "Debug::NoLocking=1")
mkdir -p "$APTDIR/cache/archives/partial"
log "updating private package lists (trixie-backports)"
apt-get "${APTOPTS[@]}" update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log"; die "apt-get update failed"; }
cd "$APTDIR/archives"
rm -f linux-source-"$KVER_SERIES"_*.deb
apt-get "${APTOPTS[@]}" download "linux-source-$KVER_SERIES" >"$APTDIR/download.log" 2>&1 \
	|| { cat "$APTDIR/download.log"; die "could not download linux-source-$KVER_SERIES"; }
deb=$(ls linux-source-"$KVER_SERIES"_*.deb | head -n1)
log "downloaded $deb"
tmp=$(mktemp -d "$CACHE/x.XXXX")
dpkg-deb -x "$deb" "$tmp"
tarball=$(ls "$tmp"/usr/src/linux-source-"$KVER_SERIES".tar.* | head -n1)
tar -C "$tmp" -xf "$tarball"
rm -rf "$SRCROOT/linux-source-$KVER_SERIES"
mv "$tmp/linux-source-$KVER_SERIES" "$SRCROOT/"
echo "${deb#linux-source-"$KVER_SERIES"_}" | sed 's/_all.deb$//' > "$SRCROOT/linux-source-$KVER_SERIES/.debian-version"
rm -rf "$tmp"
echo "$SRCROOT/linux-source-$KVER_SERIES"
