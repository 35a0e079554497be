# remap/unremap messages while fio writes and verifies: no write is lost to a block move.
# timeout: 900
. /scenarios/lib.sh
load_module
create r0 "0 $((64 * 2048)) remap $MAIN 0 $SPARE"
fio --name=churn --filename=/dev/mapper/r0 --direct=1 --ioengine=libaio --iodepth=8 \
	--rw=randwrite --bs=4k --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--loops=3 --randseed=3 --output-format=terse --terse-version=3 > /tmp/fio.out 2>&1 &
fio_pid=$!
i=0
while kill -0 $fio_pid 2>/dev/null; do
	b=$(( (i * 7919) % 4096 ))
	msg r0 remap $((b * 8)) 2 >/dev/null || fail "remap during I/O"
	if [ $((i % 3)) -eq 0 ]; then msg r0 unremap $((b * 8)) >/dev/null || fail "unremap during I/O"; fi
	i=$((i + 1))
done
wait $fio_pid || { cat /tmp/fio.out; fail "fio verify failed while blocks moved"; }
info "$i move rounds during fio; $(msg r0 stats | tr '\n' ' ')"
[ "$i" -gt 5 ] || fail "too few moves happened during fio ($i)"
# And a final full verification pass over what fio wrote.
check "fio verify pass" fio --name=churn --filename=/dev/mapper/r0 --direct=1 --ioengine=libaio \
	--iodepth=8 --rw=randwrite --bs=4k --size=16M --verify=crc32c --verify_only=1 --loops=3 \
	--randseed=3 --output-format=terse --terse-version=3
# Hot spot: all writes go to 16 blocks that keep moving, so bios do meet a moving block and are
# held and resubmitted.
msg r0 clear_stats
fio --name=hot --filename=/dev/mapper/r0 --direct=1 --ioengine=libaio --iodepth=16 \
	--rw=randwrite --bs=4k --offset=32M --size=64k --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --loops=200 --randseed=5 --output-format=terse --terse-version=3 > /tmp/fio2.out 2>&1 &
fio_pid=$!
j=0
while kill -0 $fio_pid 2>/dev/null; do
	s=$(( 65536 + (j % 16) * 8 ))
	msg r0 remap $s >/dev/null || fail "remap hot block"
	msg r0 unremap $s >/dev/null || fail "unremap hot block"
	j=$((j + 1))
done
wait $fio_pid || { cat /tmp/fio2.out; fail "fio verify failed on moving hot blocks"; }
held=$(msg r0 stats | sed -n 's/^held_bios=//p')
info "$j hot moves; held and resubmitted bios: $held"
[ "$held" -gt 0 ] || fail "no bio met a moving block: the hold path was not exercised"
check "remove" dmsetup remove r0
info "no lost writes under block moves"
