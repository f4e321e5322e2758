# slipway: the two commands of the README, and their set-up.
#   make run    build slipway and compose treefiles/atomic-host.json into $(REPO)
#   make test   every test: formatting, lints, the fast suite, then the slow suite (real
#               composes, images booted under QEMU, Vagrant)
# Both install what they need on a fresh Debian 12 machine (run as root).

REPO      ?= $(CURDIR)/build/repo
CACHEDIR  ?= /var/cache/slipway
TREEFILE  ?= treefiles/atomic-host.json
SLIPWAY   := target/release/slipway
export SLIPWAY_TEST_CACHE ?= /var/tmp/slipway-test-cache

# What slipway itself needs: building (libostree), composing, imaging.
DEPS := build-essential pkg-config libglib2.0-dev libostree-dev ostree \
	mmdebstrap bubblewrap util-linux apt dpkg gnupg ca-certificates curl \
	fdisk e2fsprogs dosfstools mtools grub-common grub-pc-bin grub-efi-amd64-bin \
	qemu-utils tar zstd
# What the tests add: QEMU with SeaBIOS, OVMF and iPXE, SSH, initramfs inspection,
# Vagrant with the libvirt provider.
TEST_DEPS := qemu-system-x86 ovmf seabios ipxe-qemu openssh-client dracut-core cpio \
	iproute2 procps vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients \
	dnsmasq-base iptables

.PHONY: run test deps test-deps rust build fast-test slow-test lint bench clean

run: deps rust build
	mkdir -p $(dir $(REPO))
	$(SLIPWAY) compose tree --repo $(REPO) --cachedir $(CACHEDIR) \
		--write-composejson-to $(CURDIR)/build/compose.json $(TREEFILE)

test: deps test-deps rust lint fast-test slow-test

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEPS)

# Daemons in these packages (libvirtd, dnsmasq) must not start on the host: the Vagrant test
# runs its own libvirtd inside a network namespace. policy-rc.d keeps them stopped while the
# packages install.
test-deps:
	@if [ -e /usr/sbin/policy-rc.d ]; then had_policy=1; else had_policy=0; \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_DEPS); rc=$$?; \
	[ $$had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d; exit $$rc

# A Rust toolchain: the machine's if it has one, else rustup's stable.
rust:
	@command -v cargo >/dev/null 2>&1 || [ -x $$HOME/.cargo/bin/cargo ] || \
		(curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy)

build:
	PATH=$$HOME/.cargo/bin:$$PATH cargo build --release

lint:
	PATH=$$HOME/.cargo/bin:$$PATH cargo fmt --check
	PATH=$$HOME/.cargo/bin:$$PATH cargo clippy --all-targets -- -D warnings

fast-test:
	PATH=$$HOME/.cargo/bin:$$PATH cargo test

# One test at a time: VMs and composes each want both cores.
slow-test:
	PATH=$$HOME/.cargo/bin:$$PATH cargo test -- --ignored --test-threads=1

bench: deps test-deps rust build
	bench/run.sh

clean:
	rm -rf build
