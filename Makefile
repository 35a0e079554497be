# dm-remap: build, test and benchmark. `make help` lists the targets.
SHELL := /bin/bash
FLAVOUR ?= debug
SCENARIO ?=
BENCH ?=
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
export LIBCLANG_PATH ?= /usr/lib/llvm-22/lib

# Scenarios of the distribution-kernel leg (make test-distro): data, metadata, fault and CLI.
DISTRO_SCENARIOS ?= load_unload,create_basic,offset_mapping,multi_segment,remap_data,reload,remap_suspend,metadata,fault_read,fault_write,fault_ext4,ext4,fio_verify,bad_messages,rmmod_busy,control_device,events,cli

.PHONY: help deps kernel kmod kmod-distro userspace devtools lint cargo-test script-test index-test vm-test test test-full test-distro demo bench bench-check bench-baseline clean install install-dkms deb rules-test test-boot

help:
	@echo "make demo                  boot a VM (release kernel) and show a remap device working"
	@echo "make test                  lint, cargo tests, the VM scenario suite on the debug kernel, test-boot"
	@echo "make test-full             make test plus the slow scenarios (suite: full)"
	@echo "make lint                  cargo fmt --check and clippy with warnings as errors"
	@echo "make vm-test [SCENARIO=x]  VM scenarios only (FLAVOUR=debug|release)"
	@echo "make bench BENCH=name      benchmark (kernel io nvme control storm powercut pipeline jitter scrub) -> target/bench/name.json"
	@echo "make bench-check           performance gate: icount-VM figures vs tests/bench/baseline.json, fails on > 2 % regression"
	@echo "make bench-baseline        re-measure the icount-VM figures and write them as the baselines"
	@echo "make kmod [KDIR=dir]       build dm_remap.ko (cached test kernel, or any Rust-enabled KDIR)"
	@echo "make test-distro           VM scenarios on Debian's own 7.3.4+deb13-amd64 kernel (SCENARIO=x to pick)"
	@echo "make test-boot             boot_activate: Debian 13 guest (systemd, udev) with the package, reboot with disks reordered"
	@echo "make kmod-distro           build dm_remap.ko for Debian's kernel (scripts/build-distro-kmod.sh)"
	@echo "make kernel FLAVOUR=x      build the cached test kernel"
	@echo "make userspace             build dmremap and dmremapd (production, checked free of dev tools)"
	@echo "make devtools              build them with the development tools into target/devtools"
	@echo "make install [DESTDIR=d] [PREFIX=/usr]  install binaries, units, udev rule, man pages, docs"
	@echo "make install-dkms [DESTDIR=d]           install the module source for DKMS (/usr/src)"
	@echo "make deb                   Debian packages dm-remap and dm-remap-dkms -> target/deb/"
	@echo "make deps                  install the Debian packages and tools the build needs"
	@echo "make rules-test            promtool check/test of the shipped Prometheus alert rules"
	@echo "make index-test            userspace test of the remap index (kmod/index.c, gcc with ASan/UBSan)"

deps:
	@scripts/install-deps.sh

kernel: deps
	@scripts/build-kernel.sh $(FLAVOUR)

ifdef KDIR
export RUSTC HOSTRUSTC RUSTDOC BINDGEN LLVM
kmod:
	@scripts/build-kmod.sh KDIR=$(KDIR)
else
kmod: deps
	@scripts/build-kmod.sh $(FLAVOUR)
endif

kmod-distro: deps
	@scripts/build-distro-kmod.sh

userspace: deps
	@t0=$$SECONDS; $(CARGO) build --release --workspace --bins || exit 1; \
	scripts/check-release-bins.sh target/release || exit 1; \
	echo "[$$(date +%T)] stage userspace: done in $$((SECONDS - t0)) s"

# The VM tests and benchmarks use the development tools (fuzz-control, bench storm, nvme bench,
# loadtest, dmremapd bench, testing-inject-error-log): built into target/devtools.
devtools: deps
	@t0=$$SECONDS; $(CARGO) build --profile devtools --workspace --bins --features dmremap/devtools,dmremapd/devtools || exit 1; \
	echo "[$$(date +%T)] stage devtools: done in $$((SECONDS - t0)) s"

# Fails fast: formatting and clippy before anything is built or booted.
lint: deps
	@t0=$$SECONDS; $(CARGO) fmt --all --check || { echo "lint: run 'cargo fmt --all'"; exit 1; }; \
	$(CARGO) clippy --workspace --all-targets -- -D warnings || exit 1; \
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings || exit 1; \
	echo "[$$(date +%T)] stage lint: done in $$((SECONDS - t0)) s"

cargo-test: deps
	@t0=$$SECONDS; $(CARGO) test --workspace --all-features; rc=$$?; echo "[$$(date +%T)] stage cargo-test: done in $$((SECONDS - t0)) s"; exit $$rc

# Unit tests of the scripts (the performance gate's comparison).
script-test:
	@t0=$$SECONDS; python3 -m unittest discover -s tests/bench -p 'test_*.py' || exit 1; \
	echo "[$$(date +%T)] stage script-test: done in $$((SECONDS - t0)) s"

# The remap index (kmod/index.c) in userspace, against a model, with sanitizers (tests/index/).
index-test: deps
	@t0=$$SECONDS; tests/index/run.sh || exit 1; \
	echo "[$$(date +%T)] stage index-test: done in $$((SECONDS - t0)) s"

# SUITE=full adds the scenarios marked `# suite: full` (make test-full).
SUITE ?= test
vm-test: deps devtools
	@tests/vm/run.sh --flavour $(FLAVOUR) --suite $(SUITE) $(SCENARIO)
ifeq ($(SCENARIO),)
	@tests/vm/run.sh --flavour $(FLAVOUR) --powercut 3 60
endif

# lint runs first and stops the run before the cargo tests and the VM suite; test-boot last.
test: lint
	@$(MAKE) --no-print-directory cargo-test script-test index-test rules-test userspace vm-test test-boot

# Every scenario, the slow ones too (remap_many, control_fuzz, fio_verify, fail_page_alloc).
test-full: lint
	@$(MAKE) --no-print-directory cargo-test script-test index-test rules-test userspace vm-test test-boot SUITE=full

rules-test: deps
	@tests/prometheus/check-rules.sh

install: userspace
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install.sh --tools --config

install-dkms:
	@DESTDIR="$(DESTDIR)" scripts/install.sh --dkms

deb: userspace
	@scripts/build-deb.sh

test-distro: deps devtools
	@tests/vm/run.sh --flavour distro $(or $(SCENARIO),$(DISTRO_SCENARIOS))

# boot_activate (the last stage of make test): two boots of a Debian 13 guest (systemd, udev,
# Debian's kernel) with target/deb/dm-remap_*.deb installed (tests/boot/run.sh).
test-boot: deps deb
	@t0=$$SECONDS; tests/boot/run.sh; rc=$$?; echo "[$$(date +%T)] stage test-boot: done in $$((SECONDS - t0)) s"; exit $$rc

bench: deps devtools
	@test -n "$(BENCH)" || { echo "usage: make bench BENCH=kernel|io|nvme|control|storm|powercut|pipeline|jitter|scrub"; exit 2; }
	@scripts/bench.sh $(BENCH)

# The performance gate: only the icount-VM benchmarks (repeatable instruction counts).
bench-check: deps devtools
	@scripts/bench-check.sh

bench-baseline: deps devtools
	@scripts/bench-check.sh --update

demo: deps devtools
	@tests/vm/run.sh --flavour release --suite demo --echo

clean:
	$(CARGO) clean
	rm -rf target/kmod target/kmod-build
