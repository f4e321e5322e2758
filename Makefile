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

.PHONY: run test deps test-deps bench-deps rust build fast-test slow-test lint bench clean

run: deps rust build
	mkdir -p $(dir $(REPO))
	$(SLIPWAY) compose tree --repo $(REPO) --cachedir $(CACHEDIR) \
		--write-composejson-to $(CURDIR)/build/compose.json $(TREEFILE)

test: test-deps rust lint fast-test build slow-test

# Packages and the check that every tool is in place after installing: scripts/install-deps.sh
# (one apt transaction, so a test package cannot remove a build tool; see the script).
deps:
	scripts/install-deps.sh build

test-deps:
	scripts/install-deps.sh test

bench-deps:
	scripts/install-deps.sh bench

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

# One test at a time: VMs and composes each want both cores. Hosts composed by the tests
# carry the release build of slipway, as hosts composed by `make run` do.
slow-test:
	PATH=$$HOME/.cargo/bin:$$PATH SLIPWAY_HOST_EXE=$(CURDIR)/$(SLIPWAY) \
		cargo test -- --ignored --test-threads=1

bench: bench-deps rust build
	bench/run.sh

clean:
	rm -rf build
