# Helpers for scenario scripts (busybox sh). Source as: . /scenarios/lib.sh
set -u
MAIN=/dev/nvme0n1      # emulated NVMe, 1 GiB
SPARE=/dev/vda         # virtio-blk, 256 MiB
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

module_loaded() { grep -q '^dm_remap ' /proc/modules; }
load_module() { module_loaded || check "insmod dm_remap" insmod "$MODULE"; }

sectors() { blockdev --getsz "$1"; }
# dm_sysfs NAME: the sysfs directory of a device-mapper device.
dm_sysfs() { echo "/sys/dev/block/$(dmsetup info -c --noheadings -o major,minor --separator : "$1" | tr -d ' ')"; }
devno() { cat "/sys/class/block/$(basename "$(readlink -f "$1")")/dev"; }
# wipe DEV [MiB]: zero the start of a device.
wipe() { dd if=/dev/zero of="$1" bs=1M count="${2:-8}" oflag=direct status=none; }
# sha_range DEV START_SECTOR SECTORS: checksum of a range, read with direct I/O.
sha_range() { dd if="$1" bs=512 skip="$2" count="$3" iflag=direct status=none | sha256sum | cut -d' ' -f1; }
# random_file PATH SECTORS: random data to write and verify later.
random_file() { dd if=/dev/urandom of="$1" bs=512 count="$2" status=none; }
# create NAME TABLE: create a device-mapper device from a table line.
create() { check "dmsetup create $1" dmsetup create "$1" --table "$2"; }
