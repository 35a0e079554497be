# dm-remap: build, test and benchmark. `make help` lists the targets.
SHELL := /bin/bash
FLAVOUR ?= debug
SCENARIO ?=
BENCH ?=
CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=
export LIBCLANG_PATH ?= /usr/lib/llvm-22/lib

.PHONY: help deps kernel kmod userspace cargo-test vm-test test demo bench clean install install-dkms deb rules-test

help:
	@echo "make demo                  boot a VM (release kernel) and show a remap device working"
	@echo "make test                  cargo tests + the VM scenario suite on the debug kernel"
	@echo "make vm-test [SCENARIO=x]  VM scenarios only (FLAVOUR=debug|release)"
	@echo "make bench BENCH=name      benchmark (kernel io nvme control storm powercut pipeline jitter scrub) -> target/bench/name.json"
	@echo "make kmod [KDIR=dir]       build dm_remap.ko (cached test kernel, or any Rust-enabled KDIR)"
	@echo "make kernel FLAVOUR=x      build the cached test kernel"
	@echo "make userspace             build dmremap and dmremapd"
	@echo "make install [DESTDIR=d] [PREFIX=/usr]  install binaries, units, udev rule, man pages, docs"
	@echo "make install-dkms [DESTDIR=d]           install the module source for DKMS (/usr/src)"
	@echo "make deb                   Debian packages dm-remap and dm-remap-dkms -> target/deb/"
	@echo "make deps                  install the Debian packages and tools the build needs"
	@echo "make rules-test            promtool check/test of the shipped Prometheus alert rules"

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

userspace: deps
	@t0=$$SECONDS; $(CARGO) build --release --workspace --bins || exit 1; echo "[$$(date +%T)] stage userspace: done in $$((SECONDS - t0)) s"

cargo-test: deps
	@t0=$$SECONDS; $(CARGO) test --workspace; rc=$$?; echo "[$$(date +%T)] stage cargo-test: done in $$((SECONDS - t0)) s"; exit $$rc

vm-test: deps userspace
	@tests/vm/run.sh --flavour $(FLAVOUR) $(SCENARIO)
ifeq ($(SCENARIO),)
	@tests/vm/run.sh --flavour $(FLAVOUR) --powercut 3 60
endif

test: cargo-test rules-test vm-test

rules-test: deps
	@tests/prometheus/check-rules.sh

install: userspace
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install.sh --tools --config

install-dkms:
	@DESTDIR="$(DESTDIR)" scripts/install.sh --dkms

deb: userspace
	@scripts/build-deb.sh

bench: deps userspace
	@test -n "$(BENCH)" || { echo "usage: make bench BENCH=kernel|io|nvme|control|storm|powercut|pipeline|jitter|scrub"; exit 2; }
	@scripts/bench.sh $(BENCH)

demo: deps userspace
	@tests/vm/run.sh --flavour release --suite demo --echo

clean:
	$(CARGO) clean
	rm -rf target/kmod target/kmod-build
