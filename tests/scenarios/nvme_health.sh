# `dmremap nvme list|smart|errors` against ten emulated NVMe controllers, field by field against
# nvme-cli's JSON output; then a critical warning raised at run time on one controller (QMP
# qom-set through the host harness) must show on that controller only.
# vm: nvme10
# timeout: 600
. /scenarios/lib.sh

WANT_CTRLS=10        # the nvme10 profile: ten controllers,
WANT_NS=13           # three of them with two namespaces
WARN_QOM=nvme6       # QEMU id of the controller that gets the critical warning (serial DMRNV06)
WARN_SERIAL=DMRNV06
WARN_BITS=4          # NVM subsystem reliability degraded

# json_flat: JSON on stdin -> one "path value" line per scalar; the path joins object keys and
# array indexes with "." (errors.0.sqid). Strings lose their quotes and numbers stay as written,
# so nvme-cli's quoted 128-bit counters ("12") and our JSON integers (12) compare digit for digit
# without going through floating point.
json_flat() {
	awk '
	function emit(v,   p, i) {
		p = ""
		for (i = 1; i <= n; i++) p = p (i > 1 ? "." : "") (type[i] == "{" ? key[i] : idx[i])
		print p " " v
	}
	{ s = s " " $0 }
	END {
		n = 0
		while (s != "") {
			if (match(s, /^[ \t\r\n]+/)) { s = substr(s, RLENGTH + 1); continue }
			c = substr(s, 1, 1)
			if (c == "{" || c == "[") { n++; type[n] = c; key[n] = ""; idx[n] = 0; wantkey[n] = (c == "{"); s = substr(s, 2); continue }
			if (c == "}" || c == "]") { n--; s = substr(s, 2); continue }
			if (c == ":") { wantkey[n] = 0; s = substr(s, 2); continue }
			if (c == ",") { if (type[n] == "{") wantkey[n] = 1; else idx[n]++; s = substr(s, 2); continue }
			if (c == "\"") {
				if (!match(s, /^"([^"\\]|\\.)*"/)) { print "json_flat: unterminated string" > "/dev/stderr"; exit 1 }
				tok = substr(s, 2, RLENGTH - 2); s = substr(s, RLENGTH + 1)
				if (type[n] == "{" && wantkey[n]) key[n] = tok; else emit(tok)
				continue
			}
			if (!match(s, /^[-+.0-9A-Za-z]+/)) { print "json_flat: unexpected " substr(s, 1, 20) > "/dev/stderr"; exit 1 }
			emit(substr(s, 1, RLENGTH)); s = substr(s, RLENGTH + 1)
		}
		if (n != 0) { print "json_flat: unbalanced brackets" > "/dev/stderr"; exit 1 }
	}'
}

# by_device: flattened `list` output -> "<DevicePath>.<field> value", so that the two lists can
# be compared whatever order they list the namespaces in.
by_device() {
	awk '{
		split($1, p, "."); if (p[1] != "Devices" || p[3] == "") next
		v = substr($0, length($1) + 2); val[p[2] "," p[3]] = v; fields[p[2]] = fields[p[2]] " " p[3]
		if (p[3] == "DevicePath") dev[p[2]] = v
	}
	END { for (i in fields) { m = split(fields[i], f, " "); for (j = 1; j <= m; j++) print dev[i] "." f[j] " " val[i "," f[j]] } }'
}

# compare_flat WHAT OURS THEIRS [ONE_SIDED_RE]: two flattened documents must have the same value
# at every path they share, and no path may be on one side only unless it matches ONE_SIDED_RE.
# Prints the number of shared paths; the differences go to stderr.
compare_flat() {
	awk -v what="$1" -v skip="${4:-}" '
		{ k = $1; v = substr($0, length($1) + 2) }
		FNR == NR { ours[k] = v; next }
		{ theirs[k] = v }
		END {
			bad = 0; n = 0
			for (k in ours) {
				if (k in theirs) {
					n++
					if (ours[k] != theirs[k]) { printf "%s: %s: dmremap \"%s\", nvme-cli \"%s\"\n", what, k, ours[k], theirs[k] > "/dev/stderr"; bad = 1 }
				} else if (skip == "" || k !~ skip) { printf "%s: %s only in dmremap\n", what, k > "/dev/stderr"; bad = 1 }
			}
			for (k in theirs)
				if (!(k in ours) && (skip == "" || k !~ skip)) { printf "%s: %s only in nvme-cli\n", what, k > "/dev/stderr"; bad = 1 }
			print n
			exit bad
		}' "$2" "$3"
}

# serial CTRL: the controller's serial number (sysfs pads it with spaces).
serial() { read -r _s < /sys/class/nvme/$1/serial; echo "$_s"; }

# value FLATFILE PATH: the value at PATH (empty if absent).
value() { awk -v k="$2" '$1 == k { print substr($0, length($1) + 2); exit }' "$1"; }

command -v dmremap >/dev/null || fail "dmremap binary missing from the initramfs"
command -v nvme >/dev/null || fail "nvme-cli missing from the initramfs"

ctrls=$(ls /sys/class/nvme | grep -E '^nvme[0-9]+$')
assert_eq "controllers in sysfs" "$(echo "$ctrls" | wc -l)" "$WANT_CTRLS"
sysfs_ns=$(for c in $ctrls; do ls /sys/class/nvme/$c | grep -E "^nvme[0-9]+n[0-9]+$"; done | sort)
assert_eq "namespaces in sysfs" "$(echo "$sysfs_ns" | wc -l)" "$WANT_NS"

# ---- list: every controller and namespace, same fields as `nvme list -o json`.
dmremap nvme list --json > /tmp/list.ours.json || fail "dmremap nvme list --json"
nvme list -o json > /tmp/list.theirs.json || fail "nvme list -o json"
json_flat < /tmp/list.ours.json > /tmp/list.ours.flat || fail "dmremap list: bad JSON"
json_flat < /tmp/list.theirs.json > /tmp/list.theirs.flat || fail "nvme-cli list: bad JSON"
by_device < /tmp/list.ours.flat | sort > /tmp/list.ours
by_device < /tmp/list.theirs.flat | sort > /tmp/list.theirs
ours_devs=$(grep '\.DevicePath ' /tmp/list.ours | cut -d' ' -f2 | sort)
assert_eq "namespaces listed by dmremap" "$(echo "$ours_devs" | wc -l)" "$WANT_NS"
assert_eq "namespaces listed by nvme-cli" "$(grep -c '\.DevicePath ' /tmp/list.theirs)" "$WANT_NS"
assert_eq "dmremap list = sysfs block devices" "$(echo "$ours_devs" | sed 's|^/dev/||' | tr '\n' ' ')" \
	"$(echo "$sysfs_ns" | tr '\n' ' ')"
assert_eq "controllers listed by dmremap" "$(grep '\.Controller ' /tmp/list.ours | cut -d' ' -f2 | sort -u | wc -l)" "$WANT_CTRLS"
# UsedBytes needs Identify Namespace, which dmremap does not issue; Controller is dmremap's own field.
shared=$(compare_flat list /tmp/list.ours /tmp/list.theirs '[.](UsedBytes|Controller)$') ||
	fail "dmremap nvme list differs from nvme list"
assert_eq "list fields compared" "$shared" $((WANT_NS * 8))
# Each namespace's controller owns it in sysfs and reports the nsid sysfs gives.
for line in $(grep '\.Controller ' /tmp/list.ours | tr ' ' '='); do
	path=${line%%=*}; ctrl=${line#*=}; ns=${path#/dev/}; ns=${ns%.Controller}
	[ -d /sys/class/nvme/$ctrl/$ns ] || fail "list: $ns is not under controller $ctrl in sysfs"
	assert_eq "list: nsid of $ns" "$(value /tmp/list.ours "/dev/$ns.NameSpace")" "$(cat /sys/class/nvme/$ctrl/$ns/nsid)"
done
info "list: $WANT_CTRLS controllers, $WANT_NS namespaces, $shared fields equal to nvme-cli"

# smart_both DEV TAG: flattened SMART logs of DEV from dmremap and nvme-cli into /tmp/smart.TAG.*.
smart_both() {
	dmremap nvme smart "$1" --json > /tmp/smart.json || fail "dmremap nvme smart $1"
	json_flat < /tmp/smart.json > /tmp/smart.$2.ours || fail "dmremap smart $1: bad JSON"
	nvme smart-log "$1" -o json > /tmp/smart.json || fail "nvme smart-log $1"
	json_flat < /tmp/smart.json > /tmp/smart.$2.theirs || fail "nvme-cli smart $1: bad JSON"
}

# ---- smart and errors on every controller.
for c in $ctrls; do
	dev=/dev/$c
	smart_both "$dev" "$c"
	n=$(compare_flat "smart $dev" /tmp/smart.$c.ours /tmp/smart.$c.theirs) ||
		{ cat /tmp/smart.$c.ours; fail "smart $dev: dmremap differs from nvme smart-log"; }
	[ "$n" -ge 22 ] || fail "smart $dev: only $n fields compared"
	assert_eq "smart $dev: fields compared = dmremap's fields" "$n" "$(wc -l < /tmp/smart.$c.ours)"
	assert_eq "smart $dev: critical_warning before" "$(value /tmp/smart.$c.ours critical_warning)" 0

	# Same entry count to both; both cap it at what the controller keeps (Identify ELPE + 1).
	nvme id-ctrl "$dev" -o json > /tmp/id.json || fail "nvme id-ctrl $dev"
	json_flat < /tmp/id.json > /tmp/id.flat || fail "nvme id-ctrl $dev: bad JSON"
	elpe=$(value /tmp/id.flat elpe)
	[ -n "$elpe" ] || fail "nvme id-ctrl $dev: no elpe"
	dmremap nvme errors "$dev" --entries 64 --json > /tmp/err.json || fail "dmremap nvme errors $dev"
	json_flat < /tmp/err.json > /tmp/err.ours || fail "dmremap errors $dev: bad JSON"
	nvme error-log "$dev" -e 64 -o json > /tmp/err.json || fail "nvme error-log $dev"
	json_flat < /tmp/err.json > /tmp/err.theirs || fail "nvme-cli errors $dev: bad JSON"
	entries=$(grep -c '^errors\.[0-9]*\.error_count ' /tmp/err.ours)
	assert_eq "errors $dev: entries from dmremap" "$entries" $((elpe + 1))
	assert_eq "errors $dev: entries from nvme-cli" "$(grep -c '^errors\.[0-9]*\.error_count ' /tmp/err.theirs)" "$entries"
	n=$(compare_flat "errors $dev" /tmp/err.ours /tmp/err.theirs) ||
		fail "errors $dev: dmremap differs from nvme error-log"
	assert_eq "errors $dev: fields compared" "$n" $((entries * 12))
	info "$dev ($(serial $c)): smart $(wc -l < /tmp/smart.$c.ours) fields, error log $entries entries x 12 fields equal"
done

# Amazon statistics are for EBS / instance-store devices only: exit code 4, device named.
out=$(dmremap nvme aws-stats /dev/nvme0 2>&1); rc=$?
assert_eq "aws-stats on a QEMU controller: exit code" "$rc" 4
case "$out" in *nvme0*"not an Amazon"*) ;; *) fail "aws-stats message: $out" ;; esac

# ---- critical warning raised at run time on one controller.
target=
for c in $ctrls; do [ "$(serial $c)" = "$WARN_SERIAL" ] && target=$c; done
[ -n "$target" ] || fail "no controller with serial $WARN_SERIAL"
info "raising critical warning $WARN_BITS on QEMU $WARN_QOM = guest $target"
check "qom-set smart_critical_warning" host_do qom-set /machine/peripheral/$WARN_QOM smart_critical_warning $WARN_BITS
assert_eq "qom-get smart_critical_warning" "$(host_do qom-get /machine/peripheral/$WARN_QOM smart_critical_warning)" $WARN_BITS
# A bit the controller does not support (persistent memory region) is refused by QEMU.
expect_fail "qom-set of an unsupported warning bit" host_do qom-set /machine/peripheral/$WARN_QOM smart_critical_warning 32

for c in $ctrls; do
	smart_both /dev/$c warn.$c
	want=0; [ "$c" = "$target" ] && want=$WARN_BITS
	assert_eq "/dev/$c critical_warning (dmremap)" "$(value /tmp/smart.warn.$c.ours critical_warning)" $want
	assert_eq "/dev/$c critical_warning (nvme-cli)" "$(value /tmp/smart.warn.$c.theirs critical_warning)" $want
	compare_flat "smart /dev/$c with warning" /tmp/smart.warn.$c.ours /tmp/smart.warn.$c.theirs >/dev/null ||
		fail "smart /dev/$c: dmremap differs from nvme smart-log after the warning"
done
# The text output and a namespace device argument show the same.
dmremap nvme smart /dev/$target > /tmp/smart.txt || fail "dmremap nvme smart /dev/$target"
grep -Eq "^critical_warning +: 0x$WARN_BITS\$" /tmp/smart.txt ||
	{ cat /tmp/smart.txt; fail "dmremap nvme smart /dev/$target (text) does not show critical_warning 0x$WARN_BITS"; }
for ns in $(ls /sys/class/nvme/$target | grep -E "^nvme[0-9]+n[0-9]+$"); do
	dmremap nvme smart /dev/$ns --json > /tmp/smart.json || fail "dmremap nvme smart /dev/$ns"
	json_flat < /tmp/smart.json > /tmp/smart.ns || fail "dmremap smart /dev/$ns: bad JSON"
	assert_eq "critical_warning via /dev/$ns" "$(value /tmp/smart.ns critical_warning)" $WARN_BITS
done

check "clear the warning" host_do qom-set /machine/peripheral/$WARN_QOM smart_critical_warning 0
dmremap nvme smart /dev/$target --json > /tmp/smart.json || fail "dmremap nvme smart /dev/$target"
json_flat < /tmp/smart.json > /tmp/smart.cleared || fail "dmremap smart /dev/$target: bad JSON"
assert_eq "/dev/$target critical_warning after clearing" "$(value /tmp/smart.cleared critical_warning)" 0
info "critical warning seen on $target only, by dmremap and nvme-cli; cleared again"
