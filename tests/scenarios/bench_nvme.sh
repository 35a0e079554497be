# NVMe scrape cycles over the ten emulated controllers of the nvme10 profile: `dmremap nvme bench`
# with a cold type cache (Identify + SMART per controller) and a warm one (SMART only), one SMART
# read after the other, then warm with the SMART reads of the controllers overlapped
# (`warm_parallel`, 4 in flight); p50/p99 cycle times and allocations per cycle, and the part of
# each cycle spent in sysfs discovery.
# suite: bench
# vm: nvme10
# timeout: 1200
. /scenarios/lib.sh
CYCLES=${CYCLES:-200}
command -v dmremap >/dev/null || fail "dmremap binary missing from the initramfs"
ctrls=$(ls /sys/class/nvme | grep -cE '^nvme[0-9]+$')
assert_eq "controllers in sysfs" "$ctrls" 10
dmremap nvme bench --cycles "$CYCLES" --out /tmp/nvme.json || fail "dmremap nvme bench"
# Every cycle must have reached every controller without a failed command.
for key in controllers smart_errors detect_errors cycles cache_hits; do
	grep -o "\"$key\": [0-9]*" /tmp/nvme.json | awk '{ print $2 }' | tr '\n' ' ' > /tmp/v
	echo "$key: $(cat /tmp/v)"
	case $key in
	controllers) assert_eq "controllers scraped (document, cold, warm, parallel)" "$(cat /tmp/v)" "10 10 10 10 " ;;
	smart_errors|detect_errors) assert_eq "$key (cold, warm, parallel)" "$(cat /tmp/v)" "0 0 0 " ;;
	cycles) assert_eq "cycles (cold, warm, parallel)" "$(cat /tmp/v)" "$CYCLES $CYCLES $CYCLES " ;;
	cache_hits) assert_eq "cache hits (cold, warm, parallel)" "$(cat /tmp/v)" "0 $((CYCLES * 10)) $((CYCLES * 10)) " ;;
	esac
done
echo "@@BENCH nvme $(tr -d '\n' < /tmp/nvme.json)"
