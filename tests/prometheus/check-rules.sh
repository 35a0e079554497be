#!/usr/bin/env bash
# Check the shipped Prometheus alert rules with promtool: syntax (check rules) and behaviour on
# sample series (test rules). promtool comes from Debian's prometheus package; `make deps`
# puts it into the cache. Without it this check is skipped, saying so.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DMREMAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-remap}
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo "$CACHE/tools/bin/promtool")}
if [ ! -x "$PROMTOOL" ]; then
	echo "SKIP: promtool not found (make deps fetches it from Debian's prometheus package into $CACHE/tools/bin)"
	exit 0
fi
"$PROMTOOL" check rules "$ROOT/dist/prometheus/dm-remap.rules.yml"
cd "$ROOT/tests/prometheus"
"$PROMTOOL" test rules dm-remap.rules.test.yml
