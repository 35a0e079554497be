#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# gen-bindings.sh KERNEL_OBJTREE HEADER OUTPUT
#
# Generate the device-mapper bindings of dm_remap. The kernel crate has no device-mapper items, so
# this re-runs the kernel's own bindgen command line (saved by the kernel build in
# rust/bindings/.bindings_generated.rs.cmd: same bindgen, flags and clang arguments as the kernel
# crate) on HEADER, restricted to an allowlist. Enums that the kernel binds with #[cfi_encoding]
# (an attribute modules may not use) are blocklisted; the wrapper imports them from the kernel crate.
set -eu
objtree=$1 header=$2 out=$3
cmdfile=$objtree/rust/bindings/.bindings_generated.rs.cmd
[ -f "$cmdfile" ] || { echo "gen-bindings: $cmdfile missing: is $objtree a built Rust-enabled kernel?" >&2; exit 1; }

# The saved command: "savedcmd_... := BINDGEN INPUT ARGS -o OUTPUT -- CLANGARGS ; sed ...".
cmd=$(head -n 1 "$cmdfile" | sed -e 's/^savedcmd_[^ ]* := //' -e 's/ *; *sed .*$//' -e 's/\$(pound)/#/g')
bindgen_part=${cmd%% -- *}
clang_part=${cmd#* -- }
bindgen_part=${bindgen_part% -o *}
# Drop the kernel's dependency-file flag; keep everything else.
clang_part=$(printf '%s\n' "$clang_part" | sed -e 's/-Wp,-MMD,[^ ]*//')
# First word is bindgen, second the kernel's input header.
set -- $bindgen_part
bindgen=$1; shift 2
args=$(printf '%s ' "$@")

hdrdir=$(cd "$(dirname "$header")" && pwd)
header=$hdrdir/$(basename "$header")
tmp=$out.tmp
cd "$objtree"
eval "\"$bindgen\" \"$header\" $args \
	--allowlist-function 'dm_(register|unregister)_target|dm_(get|put)_device|dm_table_get_(mode|md)' \
	--allowlist-function 'dm_accept_partial_bio|dm_per_bio_data|dm_bio_get_target_bio_nr|dm_table_event' \
	--allowlist-function 'dmr_.*' \
	--allowlist-type 'target_type|dm_target|dm_dev|queue_limits|status_type_t|bio_list|dmr_notifier' \
	--allowlist-type 'dmr_.*' --allowlist-var 'DMR_.*' \
	--allowlist-var 'DM_MAPIO_.*|DM_ENDIO_.*|DM_TARGET_.*|SECTOR_SHIFT|REQ_OP_.*' \
	--blocklist-type 'fwctl_rpc_scope|dma_data_direction|hrtimer_restart|irqreturn|lru_status' \
	-o \"$tmp\" -- $clang_part -I\"$hdrdir\""
mv "$tmp" "$out"
