#!/usr/bin/env bash
# Run a named test suite step by step and print a table of each step's wall time.
#
#   scripts/suite.sh ci     what `make test` (and CI) runs: set-up (scripts/install-deps.sh),
#                           formatting, lints, the fast suite, the release build, then the
#                           slow tests of suites `ci` and `short`
#   scripts/suite.sh full   the same, then the slow tests of suite `full` too (`make test-full`);
#                           a `short` test is left out there, its long form runs instead
#
# The slow tests and their suites are listed in tests/suites.txt, each with a time limit in
# minutes: a test still running at its limit is killed (with every process it started) and
# counted failed. A failing step does not stop the run (no fail-fast): every step runs, the
# table shows which failed, each step's output is kept in $SUITE_LOGS (default
# target/suite-logs), and the exit status is non-zero if any step failed. One slow test at a
# time: VMs and composes each want both cores.
set -uo pipefail

suite=${1:-}
case "$suite" in ci|full) ;; *) echo "usage: $0 ci|full" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
logs=${SUITE_LOGS:-$PWD/target/suite-logs}
rm -rf "$logs"
mkdir -p "$logs"

names=() secs=() results=()
failed=0 passed=0
start_all=$(date +%s)

# step NAME LIMIT_MINUTES COMMAND...: run, time, record. Output goes to the terminal and to
# $logs/NAME.log. `timeout` runs the command in a process group of its own and signals the
# whole group at the limit, QEMU included; an interrupted or terminated run passes its signal
# on to the same group.
current=
stop() {
    trap - INT TERM
    [ -n "$current" ] && kill -TERM "$current" 2>/dev/null
    wait 2>/dev/null
    echo "suite $suite: interrupted" >&2
    exit 130
}
trap stop INT TERM
step() {
    local name=$1 limit=$2
    shift 2
    local log="$logs/${name//[^A-Za-z0-9_.-]/_}.log"
    echo "=== suite $suite: $name (limit ${limit} min)"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=60 "${limit}m" "$@" > >(tee "$log") 2>&1 &
    current=$!
    wait "$current"
    rc=$?
    current=
    local took=$(( $(date +%s) - t0 ))
    local result=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        result="TIMEOUT (${limit} min)"
    elif [ "$rc" != 0 ]; then
        result="FAILED (exit $rc)"
    fi
    if [ "$result" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    names+=("$name") secs+=("$took") results+=("$result")
    echo "=== suite $suite: $name: $result after ${took}s"
}

# Set-up first (apt; the check that every tool is there): nothing else can run without it.
step deps 30 scripts/install-deps.sh test
[ "$failed" = 0 ] || { echo "suite $suite: set-up failed; see $logs/deps.log" >&2; exit 1; }
step fmt 5 cargo fmt --check
step clippy 20 cargo clippy --all-targets -- -D warnings
step fast 30 cargo test
step build-release 20 cargo build --release

# Hosts composed by the slow tests carry the release build of slipway, as hosts composed by
# `make run` do (the fast suite makes its own choice).
export SLIPWAY_HOST_EXE=$PWD/target/release/slipway
while read -r s bin test limit _long; do
    case "$s" in
        ci) ;;
        # A short form: its long form (a `full` line) covers it in the full suite.
        short) [ "$suite" = ci ] || continue ;;
        full) [ "$suite" = full ] || continue ;;
        *) continue ;;
    esac
    if [ "$bin" = lib ]; then
        target=(--lib)
    else
        target=(--test "$bin")
    fi
    step "$bin::$test" "$limit" cargo test "${target[@]}" -- --ignored --exact "$test" \
        --test-threads=1 --nocapture
done < <(grep -v '^[[:space:]]*\(#\|$\)' tests/suites.txt)

total=$(( $(date +%s) - start_all ))
fmt_time() { printf '%d:%02d' $(( $1 / 60 )) $(( $1 % 60 )); }
# The table, in Markdown (also kept as $logs/table.md, for BENCHMARKS.md).
{
    echo "suite \`$suite\` ($0 $suite) on $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB," \
        "$(date -u '+%Y-%m-%d %H:%M UTC'), slipway $(git rev-parse --short HEAD 2>/dev/null)"
    echo
    printf '| %-100s | %8s | %s |\n' step "m:ss" result
    printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..102})" "----------" "--------"
    for i in "${!names[@]}"; do
        printf '| %-100s | %8s | %s |\n' "${names[$i]}" "$(fmt_time "${secs[$i]}")" "${results[$i]}"
    done
    printf '| %-100s | %8s | %s |\n' "total" "$(fmt_time "$total")" "$passed passed, $failed failed"
} > "$logs/table.md"
echo
cat "$logs/table.md"
echo "logs: $logs"
echo "suite: $passed passed, $failed failed"
[ "$failed" = 0 ]
