#!/usr/bin/env bash
# run.sh: the boot_activate test (make test-boot, the last stage of make test). A Debian 13
# guest with systemd and udev as PID 1, booted twice under QEMU on Debian's own kernel, with the
# project installed from its package (target/deb/dm-remap_*.deb, `make deb`):
#   boot 1  tests/boot/guest/dmr-boot-test creates a remap device (virtio-blk main and spare,
#           each with a serial), mkfs, data + checksum, an fstab line for /dev/mapper/NAME,
#           enables the units, powers off;
#   boot 2  the same disk images attached in another order (every virtio disk and both NVMe
#           disks change their kernel names); the same program checks boot-time activation, the
#           mount, the data, dmremapd and the module, printing PASS/FAIL lines.
# Prints `N passed, N failed` and exits non-zero on a failure.
#
# The guest's base root (mmdebstrap: systemd-sysv, udev, dmsetup, kmod, e2fsprogs, initramfs-tools and
# linux-image-KVER from trixie-backports) is cached in $CACHE/boot/base-KEY, keyed by the package
# list and this recipe. The module (dm_remap.ko from scripts/build-distro-kmod.sh) goes into
# /lib/modules/KVER/updates with depmod: a stand-in for dm-remap-dkms, which would need the
# kernel's Rust toolchain in the guest.
source "$(dirname "$0")/../../scripts/lib.sh"

KVER=${DISTRO_KVER:-7.3.4+deb13-amd64}
DEBIAN=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# A boot takes about 2.5 min on 2 shared cores; one took 6.7 min while a cargo build ran too.
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
RECIPE=1
[ "$(id -u)" = 0 ] || die "make test-boot needs root (mmdebstrap, chroot, mkfs.ext4 -d)"
command -v mmdebstrap >/dev/null || die "mmdebstrap missing (make deps)"

# --- base root, cached ------------------------------------------------------------------------
pkgs="systemd-sysv,udev,kmod,e2fsprogs,initramfs-tools,dmsetup,linux-base/trixie-backports"
pkgs+=",linux-image-$KVER/trixie-backports"
key=$(printf '%s\n' "recipe $RECIPE" "$pkgs" "$DEBIAN" | sha256sum | cut -c1-12)
base=$CACHE/boot/base-$key
make_base() {
	rm -rf "$base.tmp"
	mkdir -p "$CACHE/boot"
	mmdebstrap --variant=minbase --include="$pkgs" trixie "$base.tmp" \
		"deb $DEBIAN trixie main" "deb $DEBIAN trixie-backports main" >"$CACHE/boot/mmdebstrap.log" 2>&1 \
		|| { tail -n 30 "$CACHE/boot/mmdebstrap.log"; die "mmdebstrap failed ($CACHE/boot/mmdebstrap.log)"; }
	[ -f "$base.tmp/boot/vmlinuz-$KVER" ] && [ -f "$base.tmp/boot/initrd.img-$KVER" ] \
		|| die "mmdebstrap root has no /boot/vmlinuz-$KVER or initrd.img-$KVER"
	# Other bases are stale: remove them (each is ~1 GiB).
	find "$CACHE/boot" -maxdepth 1 -name 'base-*' ! -name "base-$key.tmp" -exec rm -rf {} +
	mv "$base.tmp" "$base"
}
mkdir -p "$CACHE/boot"
exec 9>"$CACHE/boot/base.lock"
flock 9
[ -f "$base/boot/vmlinuz-$KVER" ] || stage boot-base make_base
flock -u 9

deb=$(ls -t "$ROOT"/target/deb/dm-remap_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "no target/deb/dm-remap_*.deb: run make deb"
ko=$("$ROOT/scripts/build-distro-kmod.sh" --kver "$KVER")


out=$ROOT/target/vm-test/boot
mkdir -p "$(dirname "$out")"
exec 8>"$out.lock"
flock 8
rm -rf "$out"; mkdir -p "$out"

# --- the guest's root disk: base + package + module + test units -------------------------------
make_root() {
	local r=$out/root
	cp -a "$base" "$r"
	cp "$deb" "$r/tmp/dm-remap.deb"
	# The operator's install: dpkg (the postinst enables dmremapd.service through
	# deb-systemd-helper; no systemd runs in the chroot, so nothing is started).
	chroot "$r" dpkg -i /tmp/dm-remap.deb >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log"; die "dpkg -i failed"; }
	rm -f "$r/tmp/dm-remap.deb"
	install -D -m 0644 "$ko" "$r/lib/modules/$KVER/updates/dm_remap.ko"
	chroot "$r" depmod -a "$KVER"
	install -D -m 0755 "$ROOT/tests/boot/guest/dmr-boot-test" "$r/usr/local/sbin/dmr-boot-test"
	install -D -m 0644 "$ROOT/tests/boot/guest/dmr-boot-test.service" "$r/etc/systemd/system/dmr-boot-test.service"
	install -D -m 0644 "$ROOT/tests/boot/guest/dmr-boot-emergency.service" "$r/etc/systemd/system/dmr-boot-emergency.service"
	mkdir -p "$r/etc/systemd/system/multi-user.target.wants" "$r/etc/systemd/system/emergency.target.wants"
	ln -sf /etc/systemd/system/dmr-boot-test.service "$r/etc/systemd/system/multi-user.target.wants/"
	ln -sf /etc/systemd/system/dmr-boot-emergency.service "$r/etc/systemd/system/emergency.target.wants/"
	echo "LABEL=dmrroot / ext4 defaults 0 1" >"$r/etc/fstab"
	echo dmr-boot >"$r/etc/hostname"
	# Not a first boot (systemd-firstboot would prompt on the console).
	printf '%s\n' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >"$r/etc/machine-id"
	mkfs.ext4 -q -L dmrroot -d "$r" "$out/root.img" 3G
	rm -rf "$r"
	truncate -s 256M "$out/main.img"
	truncate -s 16M "$out/other1.img"
	truncate -s 16M "$out/other2.img"
	truncate -s 64M "$out/spare.img"
}
stage boot-image make_root

# boot PHASE: one boot. The main is a virtio-blk disk with serial DMRMAIN01: its stable identity
# is the sysfs `serial` (by-id virtio-DMRMAIN01). virtio-blk disks are probed one after the other
# in PCI order and named vda, vdb, ... in that order, so the renaming is deterministic:
#   boot 1: root vda, spare vdb, main vdc, then NVMe other1, other2;
#   boot 2: NVMe other2, other1, then spare vda, main vdb, root vdc.
# The NVMe disks (their controllers probe asynchronously: names in whatever order they come up)
# are there so that the guest also has disks that enumerate in parallel, as a real machine does.
# The main is not one of them: with an NVMe main, boot 2 left it nvme0n1 in about one run of
# three, and such a run proves nothing.
boot_once() {
	local phase=$1 disks=()
	local root=(-drive "file=$out/root.img,if=none,id=root,format=raw" -device virtio-blk-pci,drive=root)
	local spare=(-drive "file=$out/spare.img,if=none,id=spare,format=raw" -device virtio-blk-pci,drive=spare,serial=DMRSPARE)
	local main=(-drive "file=$out/main.img,if=none,id=main,format=raw" -device virtio-blk-pci,drive=main,serial=DMRMAIN01)
	local other1=(-drive "file=$out/other1.img,if=none,id=other1,format=raw" -device nvme,drive=other1,serial=DMROTHER1)
	local other2=(-drive "file=$out/other2.img,if=none,id=other2,format=raw" -device nvme,drive=other2,serial=DMROTHER2)
	if [ "$phase" = 1 ]; then
		disks=("${root[@]}" "${spare[@]}" "${main[@]}" "${other1[@]}" "${other2[@]}")
	else
		disks=("${other2[@]}" "${other1[@]}" "${spare[@]}" "${main[@]}" "${root[@]}")
	fi
	# la57=off as in tests/vm/run.py: with -cpu max a boot hung in early kernel start-up.
	timeout --signal=KILL "$BOOT_TIMEOUT" qemu-system-x86_64 -nodefaults -display none -no-reboot \
		-machine q35 -cpu max,la57=off -accel tcg,thread=multi -smp 2 -m 2048 \
		-kernel "$base/boot/vmlinuz-$KVER" -initrd "$base/boot/initrd.img-$KVER" \
		-chardev "file,id=con,path=$out/console-$phase.log" -serial chardev:con \
		-device virtio-rng-pci "${disks[@]}" \
		-append "console=ttyS0 root=LABEL=dmrroot rw panic=-1 dmr.phase=$phase systemd.firstboot=off systemd.show_status=1" \
		>"$out/qemu-$phase.log" 2>&1 || log "boot $phase: QEMU exited with $? (timeout ${BOOT_TIMEOUT}s?)"
}
# A boot whose kernel crashed before it ran the initramfs's /init is tried once more: nothing of
# the project (module, package, disks' contents) was involved yet. Seen under QEMU's TCG (once
# in four boots on a busy 2-core machine): the switch to the TSC clocksource patched a jump label
# in timekeeping, and the same vCPU then trapped on the patch's int3 although the instruction was
# already restored (`Oops: int3` in __timekeeping_advance, 3 s into the boot).
boot() {
	local phase=$1
	boot_once "$phase"
	if ! grep -aq "Run /init as init process" "$out/console-$phase.log" &&
		grep -aq "Kernel panic\|Oops:" "$out/console-$phase.log"; then
		mv "$out/console-$phase.log" "$out/console-$phase-early-crash.log"
		log "boot $phase: the guest kernel crashed before /init ($(grep -a -m1 'Oops:\|Kernel panic' \
			"$out/console-$phase-early-crash.log" | tr -d '\r')), console-$phase-early-crash.log; booting again"
		boot_once "$phase"
	fi
}
stage boot-1 boot 1
stage boot-2 boot 2

# Results: "DMRTEST PASS|FAIL name: detail" lines of both boots; boot 1's setup steps count too.
passed=0 failed=0
for phase in 1 2; do
	n=$(grep -ac "DMRTEST \(PASS\|FAIL\) " "$out/console-$phase.log" || true)
	if ! grep -aq "DMRTEST DONE phase=$phase" "$out/console-$phase.log"; then
		echo "FAIL boot $phase: did not finish (console: $out/console-$phase.log)"
		grep -ao "DMRTEST .*" "$out/console-$phase.log" || true
		failed=$((failed + 1))
	fi
	[ "$n" -gt 0 ] || continue
	while read -r _ res rest; do
		echo "$res boot $phase: $rest"
		if [ "$res" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done < <(grep -ao "DMRTEST \(PASS\|FAIL\) .*" "$out/console-$phase.log" | tr -d '\r')
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
