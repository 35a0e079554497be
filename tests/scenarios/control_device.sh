# The control device exists with the module, is root-only, and goes away on unload.
# timeout: 120
. /scenarios/lib.sh
load_module
[ -c /dev/dm-remap ] || fail "/dev/dm-remap missing"
assert_eq "mode" "$(stat -c %a /dev/dm-remap)" 600
check "rmmod" rmmod dm_remap
[ -e /dev/dm-remap ] && fail "/dev/dm-remap left after rmmod"
check "insmod" insmod "$MODULE"
[ -c /dev/dm-remap ] || fail "/dev/dm-remap missing after reload"
info "control device ok"
