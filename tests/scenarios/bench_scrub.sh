# Scrub throughput against the raw disk: `dmremapd scrub` of the whole emulated NVMe disk (1 GiB,
# O_DIRECT, 1 MiB and 4 MiB sequential reads) against fio sequential reads of the same disk with
# the same pattern (O_DIRECT, psync, one read in flight, the same read size), interleaved, nine
# repetitions; medians in MB/s (10^6 B/s). The ratio is the median of the per-repetition ratios
# scrub / fio (each pair ran back to back, so slow phases of the host hit both). Goal: >= 0.9.
# suite: bench
# timeout: 3600
. /scenarios/lib.sh
REPS=${REPS:-9}
DEV=$MAIN
command -v dmremapd >/dev/null || fail "dmremapd binary missing from the initramfs"
size=$(( $(sectors "$DEV") * 512 ))
# Fill the disk once so every read returns data (an unwritten QEMU image reads back zeroes anyway,
# but this keeps both readers on allocated blocks).
check "fill" fio --name=fill --filename="$DEV" --rw=write --bs=1M --direct=1 --ioengine=psync --size="$size" --output=/dev/null
fio_mbps() { # READ_KB
	fio --name=seq --filename="$DEV" --rw=read --bs="$1"k --direct=1 --ioengine=psync --iodepth=1 \
		--size="$size" --output-format=json --output=/tmp/fio.json >/dev/null || return 1
	b=$(grep -o '"bw_bytes" : [0-9]*' /tmp/fio.json | head -n1 | awk '{print $3}')
	awk -v b="$b" 'BEGIN { printf "%.1f", b / 1e6 }'
}
scrub_mbps() { # READ_KB
	dmremapd scrub "$DEV" --read-kb "$1" --json > /tmp/scrub.out || return 1
	r=$(grep '"mb_per_s"' /tmp/scrub.out | tail -n1)
	echo "$r" | grep -q '"complete":true' || return 1
	echo "$r" | grep -q '"mode":"O_DIRECT"' || return 1
	m=$(echo "$r" | sed -n 's/.*"mb_per_s":\([0-9.]*\).*/\1/p')
	awk -v m="$m" 'BEGIN { printf "%.1f", m }'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
json=""
for kb in 1024 4096; do
	f="" s="" q=""
	i=0
	while [ $i -lt "$REPS" ]; do
		# Alternate the order so neither reader always goes first.
		if [ $((i % 2)) -eq 0 ]; then
			a=$(fio_mbps $kb) || fail "fio"; b=$(scrub_mbps $kb) || { cat /tmp/scrub.out; fail "scrub"; }
		else
			b=$(scrub_mbps $kb) || { cat /tmp/scrub.out; fail "scrub"; }; a=$(fio_mbps $kb) || fail "fio"
		fi
		info "read ${kb} KiB, rep $i: fio $a MB/s, scrub $b MB/s"
		f="$f $a"; s="$s $b"
		q="$q $(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.3f", a / b }')"
		i=$((i + 1))
	done
	fm=$(echo "$f" | median); sm=$(echo "$s" | median)
	ratio=$(echo "$q" | median)
	info "read ${kb} KiB: fio median $fm MB/s, scrub median $sm MB/s, ratio $ratio"
	runs_f=$(echo $f | tr ' ' ','); runs_s=$(echo $s | tr ' ' ','); runs_q=$(echo $q | tr ' ' ',')
	json="$json{\"case\":\"fio_seq_read_${kb}KiB\",\"p50\":$fm,\"runs\":[$runs_f]},{\"case\":\"scrub_${kb}KiB\",\"p50\":$sm,\"runs\":[$runs_s],\"ratio_to_fio\":$ratio,\"ratios\":[$runs_q]},"
done
echo "@@BENCH scrub {\"device\":\"$DEV\",\"bytes\":$size,\"repetitions\":$REPS,\"results\":[${json%,}]}"
