# Load and unload the module; the target type registers and goes away.
# timeout: 120
. /scenarios/lib.sh
module_loaded && check "rmmod leftover" rmmod dm_remap
check "insmod" insmod "$MODULE"
module_loaded || fail "dm_remap not in /proc/modules after insmod"
dmsetup targets | grep -q '^remap ' || fail "target type remap not registered: $(dmsetup targets)"
check "rmmod" rmmod dm_remap
module_loaded && fail "dm_remap still loaded after rmmod"
dmsetup targets | grep -q '^remap ' && fail "target type remap still registered after rmmod"
expect_fail "insmod of a corrupt module" sh -c "head -c 4096 $MODULE > /tmp/bad.ko && insmod /tmp/bad.ko"
check "insmod again" insmod "$MODULE"
info "load/unload ok"
