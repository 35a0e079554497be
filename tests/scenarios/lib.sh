# Helpers for scenario scripts (busybox sh). Source as: . /scenarios/lib.sh
set -u
MAIN=/dev/nvme0n1      # emulated NVMe, 1 GiB
SPARE=/dev/vda         # virtio-blk, 1 GiB
SPARE2=/dev/vdb        # virtio-blk, 256 MiB
MODULE=/lib/modules/dm_remap.ko

fail() { echo "FAIL: $*"; exit 1; }
info() { echo "-- $*"; }
# check DESCRIPTION CMD...: run CMD, fail with its output if it fails.
check() {
	desc=$1; shift
	out=$("$@" 2>&1) || { echo "$out"; fail "$desc (exit $?): $*"; }
	[ -n "$out" ] && echo "$out"
	return 0
}
# expect_fail DESCRIPTION CMD...: CMD must fail.
expect_fail() {
	desc=$1; shift
	if out=$("$@" 2>&1); then echo "$out"; fail "$desc: unexpectedly succeeded: $*"; fi
	return 0
}
# assert_eq WHAT GOT WANT
assert_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

# have_target NAME: the kernel has the device-mapper target NAME registered (Debian's kernel, for
# one, is built without dm-dust).
have_target() { dmsetup targets | grep -q "^$1 "; }
module_loaded() { grep -q '^dm_remap ' /proc/modules; }
load_module() { module_loaded || check "insmod dm_remap" insmod "$MODULE"; }

sectors() { blockdev --getsz "$1"; }
# dm_sysfs NAME: the sysfs directory of a device-mapper device.
dm_sysfs() { echo "/sys/dev/block/$(dmsetup info -c --noheadings -o major,minor --separator : "$1" | tr -d ' ')"; }
devno() { cat "/sys/class/block/$(basename "$(readlink -f "$1")")/dev"; }
# wipe DEV [MiB]: zero the start of a device.
wipe() { dd if=/dev/zero of="$1" bs=1M count="${2:-8}" oflag=direct status=none; }
# blank DEV: zero the first and last MiB, where remap metadata lives (an unformatted spare).
blank() {
	_sz=$(blockdev --getsz "$1")
	dd if=/dev/zero of="$1" bs=512 count=2048 oflag=direct status=none &&
	dd if=/dev/zero of="$1" bs=512 count=2048 seek=$((_sz - 2048)) oflag=direct status=none
}
# md_field SPARE NAME: a number from `dmremap inspect --json SPARE` (first occurrence).
md_field() { dmremap inspect --json "$1" | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" | head -n1; }
# md_journal_next SPARE: sector where the next metadata journal commit goes (read after dropping
# the spare's page cache: the target writes the spare around it).
md_journal_next() { blockdev --flushbufs "$1" && md_field "$1" next_sector; }
# slot_byte SPARE SLOT BLOCK_BYTES: byte offset of a data slot on a formatted spare.
slot_byte() { echo $(( $(md_field "$1" data_start) * 512 + $2 * $3 )); }
# sha_range DEV START_SECTOR SECTORS: checksum of a range, read with direct I/O.
sha_range() { dd if="$1" bs=512 skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1; }
# random_file PATH SECTORS: random data to write and verify later.
random_file() { dd if=/dev/urandom of="$1" bs=512 count="$2" status=none; }
# create NAME TABLE: create a device-mapper device from a table line.
create() { check "dmsetup create $1" dmsetup create "$1" --table "$2"; }
# read_at DEV BYTE_OFFSET BYTES: one direct read of BYTES at BYTE_OFFSET, checksummed.
read_at() { dd if="$1" bs="$3" count=1 skip="$2" iflag=direct,skip_bytes status=none | sha256sum | cut -d' ' -f1; }
# file_at FILE BYTE_OFFSET BYTES: checksum of a range of a file.
file_at() { dd if="$1" bs="$3" count=1 skip="$2" iflag=skip_bytes status=none | sha256sum | cut -d' ' -f1; }
# write_at DEV MODEL BYTE_OFFSET BYTES: one direct write of random data, mirrored into MODEL.
write_at() {
	dd if=/dev/urandom of=/tmp/chunk bs="$4" count=1 status=none
	dd if=/tmp/chunk of="$1" bs="$4" count=1 seek="$3" oflag=direct,seek_bytes conv=notrunc status=none || return 1
	dd if=/tmp/chunk of="$2" bs="$4" count=1 seek="$3" oflag=seek_bytes conv=notrunc status=none
}
# msg DEV WORDS...: dmsetup message to sector 0 of DEV.
msg() { d=$1; shift; dmsetup message "$d" 0 "$@"; }
# field DEV N: field N of the status INFO (after "start len remap").
field() { dmsetup status "$1" | awk -v n="$2" '{print $(n + 3)}'; }
# host_do COMMAND ARGS...: ask the host harness to act on this VM (commands: see tests/vm/run.py,
# e.g. `host_do qom-set /machine/peripheral/nvme3 smart_critical_warning 4`) and wait for its
# answer on the console input. Prints what follows "ok" in the answer (e.g. qom-get's value);
# fails with the host's message on an error or after HOST_TIMEOUT seconds (default 60) without one.
# The request is repeated every 10 s; the host answers a repeated request without redoing it.
host_do() {
	# A random id: a counter would repeat when host_do runs in a subshell, as in $(host_do ...).
	_hid=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
	[ -n "$_hid" ] || { echo "host_do: no random id" >&2; return 1; }
	_end=$(($(date +%s) + ${HOST_TIMEOUT:-60}))
	_next=0
	while :; do
		_now=$(date +%s)
		[ "$_now" -lt "$_end" ] || { echo "host_do $*: no answer from the host" >&2; return 1; }
		if [ "$_now" -ge "$_next" ]; then
			echo "@@HOST $_hid $*" > /dev/console
			_next=$((_now + 10))
		fi
		IFS= read -r -t 1 _line < /dev/console || continue
		_line=$(echo "$_line" | tr -d '\r')
		case "$_line" in
		"@@ACK $_hid ok") return 0 ;;
		"@@ACK $_hid ok "*) echo "${_line#"@@ACK $_hid ok "}"; return 0 ;;
		"@@ACK $_hid error"*) echo "host_do $*: ${_line#"@@ACK $_hid error "}" >&2; return 1 ;;
		esac
	done
}
# now_ms: milliseconds since boot (10 ms resolution), for latency bounds.
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
# timed_ms BOUND_MS DESCRIPTION CMD...: run CMD (it must succeed) and fail if it took BOUND_MS or
# more; prints the time taken.
timed_ms() {
	_bound=$1 _desc=$2; shift 2
	_t0=$(now_ms)
	check "$_desc" "$@"
	_ms=$(( $(now_ms) - _t0 ))
	info "$_desc: ${_ms} ms (bound ${_bound} ms)"
	[ "$_ms" -lt "$_bound" ] || fail "$_desc took ${_ms} ms (bound ${_bound} ms)"
}
# fio_fill DEV OFFSET SIZE: sequential 64 KiB direct writes of data carrying crc32c verify headers
# (fio_check verifies them later, e.g. after re-creation); quiet unless it fails.
fio_fill() {
	_o=$(fio --name=fill --filename="$1" --offset="$2" --size="$3" --rw=write --bs=64k --direct=1 \
		--ioengine=psync --verify=crc32c --do_verify=0 2>&1) || { echo "$_o"; return 1; }
}
# fio_check DEV OFFSET SIZE: every block fio_fill wrote there reads back intact.
fio_check() {
	_o=$(fio --name=fill --filename="$1" --offset="$2" --size="$3" --rw=write --bs=64k --direct=1 \
		--ioengine=psync --verify=crc32c --verify_only=1 --verify_fatal=1 2>&1) || { echo "$_o"; return 1; }
}
# ev_seq: sequence number of the newest event in the module's ring (0 when there is none).
ev_seq() { _s=$(dmremap events --json | tail -n1 | sed -n 's/^{"ts":"[^"]*","seq":\([0-9]*\),.*/\1/p'); echo "${_s:-0}"; }
# ev_count SINCE KIND [PATTERN]: events newer than sequence number SINCE of KIND (remap_done,
# pending_marked, io_error, ...), optionally only those whose JSON matches PATTERN (e.g.
# '"op":"write"').
ev_count() {
	dmremap events --json | awk -v s="$1" '{ n = $0; sub(/^[{]"ts":"[^"]*","seq":/, "", n); sub(/,.*/, "", n); if (n + 0 > s) print }' |
		grep "\"kind\":\"$2\"" | grep -c -- "${3:-.}"
}
# unbound_kworkers: pids of the kernel's unbound workers (where the target's worker runs), for
# a fault-injection task filter.
unbound_kworkers() {
	for d in /proc/[0-9]*; do case "$(cat $d/comm 2>/dev/null)" in kworker/u*) echo ${d#/proc/} ;; esac; done
}
# write_failing_blocks DEV MODEL: write MODEL's 4 KiB at every 64th block of the first 4 MiB (the
# blocks `host_do faults nvme0 write 0 512 16` fails); sets wok, weio and failed (the indexes
# of the writes that failed).
write_failing_blocks() {
	wok=0 weio=0 failed=
	for i in $(seq 0 15); do
		if write_at "$1" "$2" $((i * 64 * 4096)) 4096; then wok=$((wok + 1)); else weio=$((weio + 1)) failed="$failed $i"; fi
	done
}
