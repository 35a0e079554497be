#!/bin/bash
# Builds and runs the userspace test of the remap index (kmod/index.c over tests/index/shim.h)
# with AddressSanitizer and UndefinedBehaviorSanitizer. Needs only gcc and the C library.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CC=${CC:-gcc}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

# The kernel headers that index.c and helpers.h include become empty files: shim.h, included
# first, stands in for all of them.
for h in $(grep -ho '#include <linux/[a-z0-9_/]*\.h>' "$root/kmod/index.c" "$root/kmod/helpers.h" |
	sed 's/.*<\(.*\)>/\1/'); do
	mkdir -p "$build/include/$(dirname "$h")"
	: >"$build/include/$h"
done

$CC -std=gnu11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -Wall -Wextra -Wno-sign-compare -Wno-unused-parameter -Werror \
	-pthread -I "$build/include" -include "$here/shim.h" \
	-o "$build/test_index" "$here/test_index.c"
"$build/test_index"
