# slipway: the two commands of the README, and their set-up.
#   make run    build slipway and compose treefiles/atomic-host.json into $(REPO)
#   make test        what CI runs: formatting, lints, the fast suite, the release build, then
#                    every capability booted once (suites `ci` and `short` of tests/suites.txt); at most
#                    50 minutes cold
#   make test-full   all of that plus every long scenario (suite `full`, where the long forms
#                    replace the `short` tests); at most 120 cold
# Each installs what it needs on a fresh Debian 12 machine (run as root) and ends with a table
# of each step's wall time (scripts/suite.sh).

REPO      ?= $(CURDIR)/build/repo
CACHEDIR  ?= /var/cache/slipway
TREEFILE  ?= treefiles/atomic-host.json
SLIPWAY   := target/release/slipway
export SLIPWAY_TEST_CACHE ?= /var/tmp/slipway-test-cache

.PHONY: run test test-full deps test-deps bench-deps rust build fast-test lint bench clean

run: deps rust build
	mkdir -p $(dir $(REPO))
	$(SLIPWAY) compose tree --repo $(REPO) --cachedir $(CACHEDIR) \
		--write-composejson-to $(CURDIR)/build/compose.json $(TREEFILE)

# scripts/suite.sh installs the test packages itself (its first step, timed with the rest).
test: rust
	scripts/suite.sh ci

test-full: rust
	scripts/suite.sh full

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

bench: bench-deps rust build
	bench/run.sh

clean:
	rm -rf build
