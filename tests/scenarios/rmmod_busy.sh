# rmmod is refused while a remap device exists and works once it is gone.
# timeout: 120
. /scenarios/lib.sh
load_module
create r0 "0 8192 remap $MAIN 0 $SPARE"
expect_fail "rmmod while in use" rmmod dm_remap
module_loaded || fail "module unloaded while in use"
assert_eq "device still works" "$(dmsetup message r0 0 ping)" pong
check "remove" dmsetup remove r0
check "rmmod after remove" rmmod dm_remap
check "insmod" insmod "$MODULE"
info "rmmod refused while in use"
