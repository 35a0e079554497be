# Shared settings for the set-up scripts. Source it; do not run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything built or downloaded lives outside git, keyed so that a warm cache rebuilds nothing.
CACHE=${DMREMAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-remap}
TOOLS=$CACHE/tools
KVER_SERIES=${KVER_SERIES:-7.3}
# Kernel Rust must use Debian's rustc-web (it ships the matching library source).
KRUSTC=/usr/bin/rustc
KRUSTDOC=/usr/bin/rustdoc
BINDGEN=$TOOLS/bin/bindgen
mkdir -p "$CACHE" "$TOOLS"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# stage NAME CMD...: run a stage and print its wall time.
stage() {
	local name=$1; shift
	local t0=$SECONDS
	log "stage $name: start"
	"$@"
	log "stage $name: done in $((SECONDS - t0)) s"
}
