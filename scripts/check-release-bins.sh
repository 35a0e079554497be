#!/usr/bin/env bash
# check-release-bins.sh [DIR]: the production `dmremap` and `dmremapd` in DIR (default
# target/release) contain none of the development tools of the `devtools` feature: no such
# commands in --help or on the command line, and no such code in the symbol table.
source "$(dirname "$0")/lib.sh"
dir=${1:-$ROOT/target/release}
cli=$dir/dmremap daemon=$dir/dmremapd
[ -x "$cli" ] && [ -x "$daemon" ] || die "$dir: dmremap/dmremapd missing (make userspace)"
command -v nm >/dev/null || die "nm (binutils) is needed"
bad=0
fail() { printf 'check-release-bins: %s\n' "$*" >&2; bad=1; }

# Commands: absent from --help and refused as unknown (exit 2).
help() { "$@" --help 2>&1 || true; }
help "$cli" | grep -q fuzz-control && fail "dmremap --help lists fuzz-control"
help "$cli" bench | grep -qw storm && fail "dmremap bench --help lists storm"
help "$cli" nvme | grep -qw bench && fail "dmremap nvme --help lists bench"
for c in "fuzz-control" "bench storm" "nvme bench"; do
	rc=0; "$cli" $c --help >/dev/null 2>&1 || rc=$?
	[ $rc = 2 ] || fail "dmremap $c: exit $rc, expected 2 (unknown command)"
done
for c in loadtest bench testing-inject-error-log; do
	help "$daemon" | grep -qw "$c" && fail "dmremapd --help lists $c"
	rc=0; "$daemon" $c --help >/dev/null 2>&1 || rc=$?
	[ $rc = 2 ] || fail "dmremapd $c: exit $rc, expected 2 (unknown command)"
done

# Symbols (demangled): the modules of the development tools are not linked in. The positive
# checks make sure the symbol table is there at all.
syms() { nm -C "$1" 2>/dev/null | awk '{ $1 = ""; $2 = ""; print }'; }
s=$(syms "$cli")
grep -q 'dmremap::dmcmd::' <<<"$s" || fail "dmremap: no symbol table (stripped?)"
m=$(grep -E 'dmremap::(fuzz|storm|nvme_bench|alloc_count)::|dmremap_lib::nvme::fake::' <<<"$s" | head -3 || true)
[ -z "$m" ] || fail "dmremap contains development code: $m"
s=$(syms "$daemon")
grep -q 'dmremapd::daemon::' <<<"$s" || fail "dmremapd: no symbol table (stripped?)"
m=$(grep -E 'dmremapd::(loadtest|loadgen|bench|devtools)::|dmremap_lib::nvme::fake::|CountingAlloc' <<<"$s" | head -3 || true)
[ -z "$m" ] || fail "dmremapd contains development code: $m"
[ $bad = 0 ] || exit 1
log "production binaries in $dir: no development tools"
