# The dmremap CLI end to end: every subcommand (create, remove, list, status, remap, unremap,
# list-remaps, stats, message, events, bench, inspect, nvme, tune, completions, manpage), device
# commands checked against dmsetup's view of the same device (status field by field, every
# segment), data kept across remaps (checksums), a two-segment table, and the error cases with
# their exit codes (module not loaded, missing device, unknown name, bad arguments, busy device,
# a caller without root). Bad input for the control device: control_fuzz.sh.
# timeout: 600
. /scenarios/lib.sh
D=dmremap

# expect_rc CODE PATTERN DESC CMD...: CMD must exit with CODE and print an error line that
# starts with "dmremap: " and matches PATTERN (grep -E) on stderr.
expect_rc() {
	_want=$1 _pat=$2 _desc=$3; shift 3
	"$@" >/tmp/rc.out 2>/tmp/rc.err
	_rc=$?
	[ "$_rc" = "$_want" ] || { cat /tmp/rc.out /tmp/rc.err; fail "$_desc: exit $_rc, want $_want: $*"; }
	grep -q '^dmremap: ' /tmp/rc.err || { cat /tmp/rc.err; fail "$_desc: no 'dmremap: ' error line"; }
	grep -qE "$_pat" /tmp/rc.err || { cat /tmp/rc.err; fail "$_desc: error does not match /$_pat/"; }
	echo "ok: $_desc -> exit $_rc: $(head -1 /tmp/rc.err)"
}
# jget FILE KEY: the first scalar value of KEY in pretty-printed JSON (strings unquoted).
jget() { sed -n 's/^ *"'"$2"'": *"\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p' "$1" | head -1; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# status_agrees NAME: `dmremap status --json` agrees field by field with dmsetup (one segment).
status_agrees() {
	$D status "$1" --json > /tmp/st.json || fail "dmremap status $1"
	set -- "$1" $(dmsetup status "$1")
	assert_eq "start" "$(jget /tmp/st.json start)" "$2"
	assert_eq "length" "$(jget /tmp/st.json length)" "$3"
	assert_eq "target" "$(jget /tmp/st.json target_type)" "$4"
	assert_eq "remapped" "$(jget /tmp/st.json remapped)" "$5"
	assert_eq "pending" "$(jget /tmp/st.json pending)" "$6"
	assert_eq "spare used/total" "$(jget /tmp/st.json spare_used)/$(jget /tmp/st.json spare_total)" "$7"
	assert_eq "read errors" "$(jget /tmp/st.json read_errors)" "$8"
	assert_eq "write errors" "$(jget /tmp/st.json write_errors)" "$9"
	shift 9
	assert_eq "metadata seq" "$(jget /tmp/st.json metadata_seq)" "$1"
	assert_eq "state" "$(jget /tmp/st.json state)" "$2"
}
# jall FILE KEY: every scalar value of KEY in pretty-printed JSON, one per line, in order.
jall() { sed -n 's/^ *"'"$2"'": *"\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p' "$1"; }
# status_agrees_all NAME: `dmremap status --json` agrees with `dmsetup status`, `dmsetup table` and
# `dmsetup info` field by field, for every segment.
status_agrees_all() {
	$D status "$1" --json > /tmp/sa.json || fail "dmremap status $1"
	dmsetup status "$1" > /tmp/sa.st
	dmsetup table "$1" > /tmp/sa.tb
	_k=0
	for _f in start length target_type remapped pending spare_used spare_total read_errors write_errors metadata_seq state; do
		_k=$((_k + 1))
		case $_f in
		spare_used) awk '{split($6, a, "/"); print a[1]}' /tmp/sa.st > /tmp/sa.want ;;
		spare_total) awk '{split($6, a, "/"); print a[2]}' /tmp/sa.st > /tmp/sa.want ;;
		start | length | target_type | remapped | pending) awk -v n=$_k '{print $n}' /tmp/sa.st > /tmp/sa.want ;;
		*) awk -v n=$((_k - 1)) '{print $n}' /tmp/sa.st > /tmp/sa.want ;;
		esac
		jall /tmp/sa.json $_f > /tmp/sa.got
		cmp -s /tmp/sa.got /tmp/sa.want || { paste /tmp/sa.got /tmp/sa.want; fail "status $1: $_f differs from dmsetup status"; }
	done
	# The raw INFO and table parameters of each segment.
	jall /tmp/sa.json info > /tmp/sa.got
	cut -d' ' -f4- /tmp/sa.st > /tmp/sa.want
	cmp -s /tmp/sa.got /tmp/sa.want || { paste /tmp/sa.got /tmp/sa.want; fail "status $1: info differs"; }
	jall /tmp/sa.json params > /tmp/sa.got
	cut -d' ' -f4- /tmp/sa.tb > /tmp/sa.want
	cmp -s /tmp/sa.got /tmp/sa.want || { paste /tmp/sa.got /tmp/sa.want; fail "status $1: params differ from dmsetup table"; }
	set -- "$1" $(dmsetup info -c --noheadings --separator ' ' -o open,events,attr "$1")
	assert_eq "open count" "$(jget /tmp/sa.json open_count)" "$2"
	assert_eq "event_nr" "$(jget /tmp/sa.json event_nr)" "$3"
	case $4 in *s*) _sus=true ;; *) _sus=false ;; esac
	case $4 in *r*) _ro=true ;; *) _ro=false ;; esac
	assert_eq "suspended" "$(jget /tmp/sa.json suspended)" $_sus
	assert_eq "read_only" "$(jget /tmp/sa.json read_only)" $_ro
	echo "ok: status $1 agrees with dmsetup ($(wc -l < /tmp/sa.st) segments)"
}
# lists_agree NAME [FROM MAX]: `dmremap list-remaps` (text and JSON) lists exactly what the
# target's `list` message does (asked for up to 100000 entries at once).
lists_agree() {
	_n=$1 _from=${2:-0} _max=${3:-}
	if [ -n "$_max" ]; then
		$D list-remaps "$_n" --from "$_from" --max "$_max" > /tmp/l.txt || fail "list-remaps"
		$D list-remaps "$_n" --from "$_from" --max "$_max" --json > /tmp/l.json || fail "list-remaps --json"
		dmsetup message "$_n" "$_from" list "$_from" "$_max" > /tmp/l.want
	else
		$D list-remaps "$_n" --from "$_from" > /tmp/l.txt || fail "list-remaps"
		$D list-remaps "$_n" --from "$_from" --json > /tmp/l.json || fail "list-remaps --json"
		: > /tmp/l.want
		for _s in $(dmsetup table "$_n" | awk '{print $1 ":" $1 + $2}'); do
			_st=${_s%:*} _end=${_s#*:}
			[ "$_end" -le "$_from" ] && continue
			_f=$_from; [ "$_f" -lt "$_st" ] && _f=$_st
			dmsetup message "$_n" "$_f" list "$_f" 100000 >> /tmp/l.want
		done
	fi
	awk 'NR > 1 {print $1, $2, $3, $4}' /tmp/l.txt > /tmp/l.got
	cmp -s /tmp/l.got /tmp/l.want || { diff /tmp/l.got /tmp/l.want | head; fail "list-remaps $_n $_from $_max differs from the list message"; }
	assert_eq "JSON entries" "$(grep -c '"sector":' /tmp/l.json)" "$(wc -l < /tmp/l.want)"
	echo "ok: list-remaps $_n from $_from max ${_max:-all}: $(wc -l < /tmp/l.want) entries agree"
}

# --- Without the module: create says how to load it.
if module_loaded; then check "rmmod (no devices left by earlier scenarios)" rmmod dm_remap; fi
expect_rc 4 'target type `remap` is not registered.*modprobe dm_remap.*insmod dm_remap.ko' \
	"create without the module" $D create r0 --main "$MAIN" --spare "$SPARE"
load_module

# --- Argument and device errors, before anything is created.
expect_rc 3 "main device /dev/nvme9n1: No such file" "missing main device" \
	$D create r0 --main /dev/nvme9n1 --spare "$SPARE"
expect_rc 3 "spare device /dev/vdz: No such file" "missing spare device" \
	$D create r0 --main "$MAIN" --spare /dev/vdz
expect_rc 2 "spare device /dev/null is not a block device \(it is a character device\)" "non-block spare" \
	$D create r0 --main "$MAIN" --spare /dev/null
expect_rc 2 "main and spare are the same device" "main = spare" $D create r0 --main "$MAIN" --spare "$MAIN"
expect_rc 2 "block size 3000 is not a power of two" "bad block size" \
	$D create r0 --main "$MAIN" --spare "$SPARE" --block-size 3000
expect_rc 2 "offset 4 is not a multiple of the block size" "unaligned offset" \
	$D create r0 --main "$MAIN" --spare "$SPARE" --offset 4
msz=$(sectors "$MAIN")
expect_rc 2 "offset $msz is not inside the main device" "offset past the end" \
	$D create r0 --main "$MAIN" --spare "$SPARE" --offset "$msz"
expect_rc 2 "beyond the end of the main device" "length past the end" \
	$D create r0 --main "$MAIN" --spare "$SPARE" --offset 8 --length "$msz"
expect_rc 2 "contains '/'" "bad name" $D create a/b --main "$MAIN" --spare "$SPARE"
for c in "status nosuch" "remove nosuch" "remap nosuch 0" "unremap nosuch 0" "list-remaps nosuch" \
	"stats nosuch" "message nosuch ping"; do
	expect_rc 3 "^dmremap: nosuch: no such device-mapper device$" "unknown name ($c)" $D $c
done
[ -z "$(dmsetup ls | grep -v 'No devices found')" ] || fail "errors left devices behind: $(dmsetup ls)"

# --- A caller without root: uid 65534 through busybox su. The initramfs root directory comes
# from a private temporary directory (mode 0700), which would stop any other user from reaching
# /bin/sh; open it up for this part and put the mode back afterwards.
rootmode=$(stat -c %a /)
chmod 755 /
assert_eq "su works" "$(su -s /bin/sh nobody -c 'id -u')" 65534
expect_rc 5 "^dmremap: list: cannot open /dev/mapper/control: Permission denied.*needs root" "list as nobody" su -s /bin/sh nobody -c "$D list"
expect_rc 5 "^dmremap: r0: cannot open /dev/mapper/control: Permission denied.*needs root" "status as nobody" su -s /bin/sh nobody -c "$D status r0"
expect_rc 5 "main device .*Permission denied" "create as nobody" \
	su -s /bin/sh nobody -c "$D create r0 --main $MAIN --spare $SPARE"
chmod "$rootmode" /

# --- create, status.
MB=16
LEN=$((MB * 2048))
$D create r0 --main "$MAIN" --spare "$SPARE" --read-retries 2 --block-size 4096 --length $LEN \
	--uuid DMREMAP-TEST-r0 > /tmp/create.txt || fail "create r0"
cat /tmp/create.txt
[ -b /dev/mapper/r0 ] || fail "/dev/mapper/r0 is not a block device"
assert_eq "node devno" "$(stat -c '%t:%T' /dev/mapper/r0)" \
	"$(dmsetup info -c --noheadings -o major,minor --separator : r0 | awk -F: '{printf "%x:%x", $1, $2}')"
# create names the main disk by its stable identity (the NVMe namespace's WWID in sysfs).
main_id=$(cat "/sys/block/$(basename "$MAIN")/wwid")
assert_eq "table" "$(dmsetup table r0)" \
	"0 $LEN remap $(devno "$MAIN") 0 $(devno "$SPARE") 3 block_size:4096 read_retries:2 main_id:$main_id"
assert_eq "uuid" "$(dmsetup info -c --noheadings -o uuid r0)" DMREMAP-TEST-r0
expect_rc 1 "r0: a device-mapper device with this name or UUID exists already" "create twice" \
	$D create r0 --main "$MAIN" --spare "$SPARE2"
status_agrees r0
status_agrees_all r0
assert_eq "json name" "$(jget /tmp/st.json name)" r0
assert_eq "json dev" "$(jget /tmp/st.json dev)" "$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')"
assert_eq "json main" "$(jget /tmp/st.json main)" "$(devno "$MAIN")"
assert_eq "json spare" "$(jget /tmp/st.json spare)" "$(devno "$SPARE")"
assert_eq "json read_retries" "$(jget /tmp/st.json read_retries)" 2
assert_eq "json uuid" "$(jget /tmp/st.json uuid)" DMREMAP-TEST-r0
$D status r0 | grep -q "^  spare used:    0/$(field r0 3 | cut -d/ -f2)$" || { $D status r0; fail "status text"; }

# --- Data written before remaps reads back the same after them.
random_file /tmp/model $LEN
check "fill" dd if=/tmp/model of=/dev/mapper/r0 bs=1M oflag=direct status=none
want=$(sha /tmp/model)
assert_eq "data before remaps" "$(sha_range /dev/mapper/r0 0 $LEN)" "$want"

# --- remap / list-remaps against the list message.
$D remap r0 4096 --count 5 --json > /tmp/r.json || fail "remap 4096 x5"
assert_eq "remapped" "$(jget /tmp/r.json remapped)" 5
assert_eq "already" "$(jget /tmp/r.json already_remapped)" 0
out=$($D remap r0 4100) || fail "remap 4100"
echo "$out" | grep -q "^r0: remapped 0 blocks from sector 4100 (1 already remapped)$" || fail "remap again: $out"
check "remap first block" $D remap r0 0
check "remap last block" $D remap r0 $((LEN - 8))
expect_rc 2 "sector $LEN is beyond the end of the device" "remap past the end" $D remap r0 $LEN
expect_rc 2 "run past the end of its segment" "remap count past the end" $D remap r0 $((LEN - 8)) --count 2
status_agrees r0
status_agrees_all r0
assert_eq "remapped after remaps" "$(field r0 1)" 7
lists_agree r0
lists_agree r0 4104 2
lists_agree r0 4097 100
assert_eq "data after remaps" "$(sha_range /dev/mapper/r0 0 $LEN)" "$want"
# The remapped block's slot on the spare holds its data.
set -- $(dmsetup message r0 0 list 4104 1)
assert_eq "slot contents" "$(read_at "$SPARE" $(slot_byte $SPARE $3 4096) 4096)" "$(file_at /tmp/model $((4104 * 512)) 4096)"
# More than one list message's worth: list-remaps pages through all of them.
out=$($D remap r0 8192 --count 1500) || fail "remap 1500"
echo "$out" | grep -q "remapped 1500 blocks" || fail "remap 1500: $out"
lists_agree r0
assert_eq "entries" "$(($(wc -l < /tmp/l.txt) - 1))" 1507
assert_eq "data after 1507 remaps" "$(sha_range /dev/mapper/r0 0 $LEN)" "$want"

# --- Writes after remaps, then unremap.
write_at /dev/mapper/r0 /tmp/model $((4096 * 512)) 8192 || fail "write over remapped blocks"
want=$(sha /tmp/model)
out=$($D unremap r0 4100) || fail "unremap 4100"
echo "$out" | grep -q "block 512 (sector 4100) is back on the main device" || fail "unremap: $out"
$D unremap r0 4104 --json > /tmp/u.json || fail "unremap 4104"
assert_eq "unremapped block" "$(jget /tmp/u.json block)" 513
expect_rc 1 "r0: the block holding sector 4100 is not remapped" "unremap twice" $D unremap r0 4100
status_agrees r0
lists_agree r0
assert_eq "data after unremaps" "$(sha_range /dev/mapper/r0 0 $LEN)" "$want"
assert_eq "main after unremap" "$(read_at "$MAIN" $((4096 * 512)) 8192)" "$(file_at /tmp/model $((4096 * 512)) 8192)"

# --- stats, message.
$D stats r0 --json > /tmp/s.json || fail "stats"
for k in remapped spare_used remap_ops unremap_ops block_size; do
	assert_eq "stats $k" "$(jget /tmp/s.json $k)" "$(dmsetup message r0 0 stats | sed -n "s/^$k=//p")"
done
$D stats r0 > /tmp/s.txt || fail "stats text"
dmsetup message r0 0 stats | cmp -s - /tmp/s.txt || { cat /tmp/s.txt; fail "stats text differs from the stats message"; }
check "stats --clear" $D stats r0 --clear
assert_eq "remap_ops cleared" "$(dmsetup message r0 0 stats | sed -n 's/^remap_ops=//p')" 0
assert_eq "ping" "$($D message r0 ping)" pong
$D message r0 --json list 0 3 > /tmp/m.json || fail "message --json"
grep -q '"message": "list 0 3"' /tmp/m.json || { cat /tmp/m.json; fail "message JSON"; }
assert_eq "raw list" "$($D message r0 list 0 3)" "$(dmsetup message r0 0 list 0 3)"
$D message r0 help | grep -q "clear_stats" || fail "help message"

# --- events: the remaps and unremaps above, from the kernel's ring (read() on /dev/dm-remap).
r0dev=$(dmsetup info -c --noheadings -o major,minor --separator : r0 | tr -d ' ')
$D events --json > /tmp/ev.json || fail "events --json"
# (The ring keeps the last 1024 events: the 1500-block remap is the newest remap in it.)
grep -q "\"kind\":\"remap_done\",\"fields\":{\"sector\":$((8192 + 1499 * 8)),.*\"dev\":\"$r0dev\"," /tmp/ev.json ||
	fail "events: no remap of r0 sector $((8192 + 1499 * 8))"
grep -q "\"kind\":\"unremap_done\",\"fields\":{\"sector\":4096,.*\"dev\":\"$r0dev\"," /tmp/ev.json || fail "events: no unremap of r0 sector 4096"
$D events | grep -q "unremap .*dev $r0dev sector 4096 " || fail "events text"
$D events --follow --new --json > /tmp/evf.json &
evpid=$!
sleep 2
check "remap while following" $D remap r0 24576
i=0
until grep -q "\"kind\":\"remap_done\",\"fields\":{\"sector\":24576,.*\"dev\":\"$r0dev\"," /tmp/evf.json; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/evf.json; fail "events --follow did not show the remap"; }
	sleep 0.1
done
kill $evpid; wait $evpid 2>/dev/null
check "unremap again" $D unremap r0 24576

# --- bench: the in-kernel microbenchmark and the control-path round trips, briefly.
$D bench kernel --ops noop,lookup --entries 0,1000 --iterations 2000 --json > /tmp/bk.json || fail "bench kernel"
assert_eq "bench kernel cases" "$(grep -o '"case":"[a-z]*@[0-9]*"' /tmp/bk.json | tr '\n' ' ')" \
	'"case":"noop@0" "case":"lookup@0" "case":"lookup@1000" '
$D bench control --device r0 --process-iterations 3 --dm-iterations 20 --iterations 200 --json > /tmp/bc.json ||
	fail "bench control"
for c in dmsetup_message_ping dm_target_msg_ping own_ioctl_version kernel_noop; do
	grep -q "\"case\":\"$c\"" /tmp/bc.json || { cat /tmp/bc.json; fail "bench control: no case $c"; }
done
grep -q '"dmsetup_over_own_ioctl_p50":[0-9]' /tmp/bc.json || { cat /tmp/bc.json; fail "bench control: no ratio"; }
expect_rc 1 "r0: the target refused \`frobnicate\`.*EINVAL" "unknown message" $D message r0 frobnicate
expect_rc 1 "refused \`remap 99999999\`" "message with a bad sector" $D message r0 remap 99999999

# --- list: only remap devices; other targets are refused.
create lin0 "0 2048 linear $SPARE2 0"
$D list > /tmp/list.txt || fail "list"
cat /tmp/list.txt
assert_eq "list rows" "$(awk 'NR > 1 {print $1}' /tmp/list.txt)" r0
set -- $(awk '$1 == "r0"' /tmp/list.txt)
assert_eq "list remapped" "$5" "$(field r0 1)"
assert_eq "list spare" "$7" "$(field r0 3)"
$D list --json > /tmp/list.json || fail "list --json"
assert_eq "list JSON names" "$(grep -c '"name":' /tmp/list.json)" 1
expect_rc 4 "lin0: not a dm-remap device \(targets: linear\)" "status of a linear device" $D status lin0
expect_rc 4 "lin0: not a dm-remap device" "remove of a linear device" $D remove lin0
check "lin0 still there" dmsetup info lin0
check "remove lin0" dmsetup remove lin0

# --- remove: refused while open, then done.
exec 3< /dev/mapper/r0
expect_rc 1 "r0: cannot remove: the device is in use \(open count 1" "remove while open" $D remove r0
exec 3<&-
$D remove r0 --json > /tmp/rm.json || fail "remove r0"
assert_eq "removed" "$(jget /tmp/rm.json removed)" r0
dmsetup info r0 >/dev/null 2>&1 && fail "r0 still exists"
[ -e /dev/mapper/r0 ] && fail "/dev/mapper/r0 left behind"

# --- Two segments made by dmsetup (each with its own spare): messages go to the segment
# holding the sector.
seg=16384
printf '0 %s remap %s 0 %s\n%s %s remap %s 65536 %s 1 block_size:65536\n' \
	$seg "$MAIN" "$SPARE" $seg $seg "$MAIN" "$SPARE2" > /tmp/t2
# A new device: spares without the remaps r0 left on them.
check "blank spare" blank "$SPARE"
check "blank spare 2" blank "$SPARE2"
check "create ms" dmsetup create ms /tmp/t2
check "remap in segment 1" $D remap ms 8 --count 3
check "remap in segment 2" $D remap ms $((seg + 200)) --count 2
assert_eq "segment 2 list" "$(dmsetup message ms $seg list | awk '{print $1}' | tr '\n' ' ')" "$((seg + 128)) $((seg + 256)) "
lists_agree ms $((seg - 1))
assert_eq "segment 2 only" "$(($(wc -l < /tmp/l.txt) - 1))" 2
lists_agree ms
assert_eq "both segments listed" "$(($(wc -l < /tmp/l.txt) - 1))" 5
lists_agree ms 16 2
$D status ms --json > /tmp/ms.json || fail "status ms"
status_agrees_all ms
assert_eq "two segments" "$(grep -c '"target_type": "remap"' /tmp/ms.json)" 2
expect_rc 2 "run past the end of its segment" "count crossing segments" $D remap ms $((seg - 8)) --count 2
check "remove ms" $D remove ms

assert_eq "empty list" "$($D list --json)" "[]"
assert_eq "empty list text" "$($D list)" "no dm-remap devices"

# --- inspect: a blank spare, and one whose superblocks are garbage.
wipe "$SPARE2" 8
s2=$(sectors "$SPARE2")
dd if=/dev/zero of="$SPARE2" bs=512 seek=$((s2 - 2048)) count=2048 oflag=direct status=none
expect_rc 1 "$SPARE2: no metadata: the spare is blank" "inspect of a blank spare" $D inspect "$SPARE2"
$D inspect "$SPARE2" --json > /tmp/in.json; grep -q '"status": *"blank"' /tmp/in.json || { cat /tmp/in.json; fail "inspect --json blank"; }
dd if=/dev/urandom of="$SPARE2" bs=4096 count=1 oflag=direct status=none
expect_rc 1 "damaged|no valid" "inspect of a damaged spare" $D inspect "$SPARE2"
expect_rc 3 "/dev/nosuch: no such file or device" "inspect of a missing path" $D inspect /dev/nosuch
wipe "$SPARE2" 8

# --- nvme: the emulated main disk.
$D nvme list --json > /tmp/nl.json || fail "nvme list"
grep -q '"nvme0"' /tmp/nl.json || { cat /tmp/nl.json; fail "nvme list: no nvme0"; }
check "nvme smart" $D nvme smart /dev/nvme0
check "nvme errors" $D nvme errors /dev/nvme0 --entries 4
expect_rc 4 "nvme0.*not an Amazon" "nvme aws-stats on a QEMU disk" $D nvme aws-stats /dev/nvme0
check "nvme bench" $D nvme bench --cycles 3

# --- tune --check, completions, man page.
$D tune --check --pid 1 > /tmp/tune.txt || fail "tune --check"
head -1 /tmp/tune.txt | grep -q "^pid 1: online CPUs 0-1; CAP_SYS_NICE yes" || { cat /tmp/tune.txt; fail "tune text"; }
$D tune --check --json | grep -q '"cap_sys_admin": true' || fail "tune JSON"
expect_rc 3 "pid 999999: no such process" "tune of a missing pid" $D tune --check --pid 999999
$D completions bash | grep -q "list-remaps" || fail "bash completions"
$D manpage | grep -q '^\.TH dmremap 1' || fail "man page"
info "dmremap CLI ok"
