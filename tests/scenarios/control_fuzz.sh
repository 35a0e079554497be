# Bad input for the control device and the CLI: random ioctls (unknown numbers, wrong sizes,
# versions and flags, bad pointers), reads and polls on /dev/dm-remap from `dmremap fuzz-control`
# may only fail with EINVAL/EFAULT/ENOTTY/ENODEV (EAGAIN for a read), never oops; a caller
# without root gets EPERM (or EACCES from the node's mode); nonsense on the command line gets a
# clear "dmremap: " or usage message and a non-zero exit code.
# suite: full
# timeout: 900
. /scenarios/lib.sh

# expect_rc CODE PATTERN DESC CMD...: CMD exits with CODE and its stderr matches PATTERN.
expect_rc() {
	_want=$1 _pat=$2 _desc=$3; shift 3
	"$@" >/tmp/rc.out 2>/tmp/rc.err
	_rc=$?
	[ "$_rc" = "$_want" ] || { cat /tmp/rc.out /tmp/rc.err; fail "$_desc: exit $_rc, want $_want: $*"; }
	grep -qE "$_pat" /tmp/rc.err || { cat /tmp/rc.err; fail "$_desc: error does not match /$_pat/"; }
	echo "ok: $_desc -> exit $_rc: $(head -1 /tmp/rc.err)"
}

# --- Without the module.
if module_loaded; then check "rmmod (no devices left by earlier scenarios)" rmmod dm_remap; fi
expect_rc 4 "^dmremap: /dev/dm-remap: no such device: the dm_remap module is not loaded" \
	"events without the module" dmremap events
expect_rc 4 "not loaded" "bench without the module" dmremap bench kernel --ops noop --iterations 10
load_module

# Some events in the ring, and a device, so reads return data and the ring is not empty.
create f0 "0 262144 remap $MAIN 0 $SPARE"
msg f0 remap 0 50 >/dev/null || fail "remap 50"

# --- The fuzzer, with a few seeds; the last one also checks an unprivileged caller.
for seed in 1 2 3; do
	extra=
	[ $seed = 3 ] && extra=--drop-privileges
	check "fuzz-control seed $seed" dmremap fuzz-control --iterations 20000 --seed $seed $extra
done
# The module still works afterwards.
assert_eq "ping after fuzzing" "$(msg f0 ping)" pong
check "version ioctl after fuzzing" dmremap bench kernel --ops noop --iterations 100

# --- A caller without root, through busybox su (the initramfs root is 0700: open it up, as
# cli.sh does, and put it back).
rootmode=$(stat -c %a /)
chmod 755 /
expect_rc 5 "^dmremap: /dev/dm-remap: open: permission denied" "events as nobody" \
	su -s /bin/sh nobody -c "dmremap events"
# With the node opened up to everyone, the driver itself still refuses (CAP_SYS_ADMIN).
chmod 666 /dev/dm-remap
expect_rc 5 "^dmremap: /dev/dm-remap: open: permission denied" "events as nobody, node mode 666" \
	su -s /bin/sh nobody -c "dmremap events"
expect_rc 5 "permission denied" "bench as nobody, node mode 666" \
	su -s /bin/sh nobody -c "dmremap bench kernel --ops noop --iterations 10"
chmod 600 /dev/dm-remap
chmod "$rootmode" /

# --- Nonsense on the command line.
expect_rc 2 "unrecognized subcommand 'frobnicate'" "unknown subcommand" dmremap frobnicate
expect_rc 2 "invalid value 'abc' for '--since <SINCE>'" "non-numeric --since" dmremap events --since abc
expect_rc 2 "^dmremap: --since 99999999: no such event yet \(the next event will be 51\)" "--since in the future" dmremap events --since 99999999
expect_rc 2 "required arguments were not provided" "--new without --follow" dmremap events --new
expect_rc 2 "cannot be used with" "--new with --since" dmremap events --follow --new --since 3
expect_rc 2 "invalid value 'lots'" "bad iteration count" dmremap bench kernel --iterations lots
expect_rc 2 "invalid value 'fast' for '--ops" "unknown bench op" dmremap bench kernel --ops fast
expect_rc 1 "^dmremap: /dev/dm-remap: bench ioctl: Invalid argument" "zero iterations (kernel says EINVAL)" \
	dmremap bench kernel --ops noop --iterations 0
expect_rc 1 "^dmremap: /dev/dm-remap: bench ioctl: Invalid argument" "batch over 1024" \
	dmremap bench kernel --ops noop --iterations 100 --batch 5000
expect_rc 2 "0 is not in 1..=10000000" "bench control with 0 iterations" \
	dmremap bench control --device f0 --iterations 0
expect_rc 3 "^dmremap: nosuch: no such device-mapper device" "bench control of a missing device" \
	dmremap bench control --device nosuch --iterations 10
expect_rc 2 "required" "bench control without a device" dmremap bench control
expect_rc 2 "unexpected argument" "stray argument" dmremap list extra
expect_rc 2 "invalid value '-5'|unexpected argument '-5'" "negative sector" dmremap remap f0 -5
dmsetup remove f0
info "control device bad input ok"
