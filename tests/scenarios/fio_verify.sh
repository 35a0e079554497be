# fio random writes with crc32c verification through the remap device.
# suite: full
# timeout: 600
. /scenarios/lib.sh
load_module
create r0 "0 $(( 256 * 2048 )) remap $MAIN 0 $SPARE"
check "fio randwrite+verify" fio --name=verify --filename=/dev/mapper/r0 --direct=1 \
	--ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k --size=64M --verify=crc32c \
	--verify_fatal=1 --do_verify=1 --randseed=42 --output-format=terse --terse-version=3
# Mixed block sizes, sequential, verified again on a second pass.
check "fio mixed sizes" fio --name=mixed --filename=/dev/mapper/r0 --direct=1 --ioengine=libaio \
	--iodepth=8 --rw=write --bsrange=512-256k --size=32M --offset=128M --verify=crc32c \
	--verify_fatal=1 --output-format=terse --terse-version=3
check "remove" dmsetup remove r0
info "fio verify ok"
