#!/bin/bash
# bench/run.sh: slipway's benchmarks, measured in one invocation on one machine, written to
# BENCHMARKS.md at the repository root (`make bench` runs this).
#
# What is compared, and why:
#   1. Cold compose: `slipway compose tree` of treefiles/atomic-host.json into a fresh repository
#      against bench/baseline-compose.sh, the naive pipeline one would write with stock tools
#      (plain mmdebstrap, dracut with its default compression run after the kernel hook has
#      already built a throwaway initramfs, the OSTree layout in shell, `ostree commit`). Same
#      package set (slipway's resolved name=version list), same host apt sources, same .deb
#      cache: neither side downloads packages (the cache is warmed by a throwaway compose first,
#      and both sides count the .debs they had to fetch). Target: slipway <= 0.6x the baseline.
#   1p. Cold compose against a peer tool: the same cold compose (the run of 1, not another)
#      against debos building bench/debos/atomic-host.yaml (bench/debos/run-debos.sh): the
#      treefiles' packages from the host's mirror (read from the apt sources at run time and
#      passed as `-t mirror:`), debootstrap minbase, apt, the same customisations, one dracut
#      run (ostree module, zstd), the OSTree layout in shell, debos's `ostree-commit` into a
#      fresh archive repository. debos runs without fakemachine (--disable-fakemachine). It
#      keeps no .deb cache between runs, so instead of a warm-up run the recipe hardlinks the
#      shared cache into its chroot; what it still downloads (the debs debootstrap takes from
#      the suite alone, index files) is counted and reported. The two commits' package lists
#      are compared. Target: slipway <= 0.5x debos.
#   2. No-op recompose: the same compose again; nothing changed, so it must stop after resolving
#      (composejson `"changed": false`). Target: under 2 s.
#   3. Commit stage: ONE converted tree (the baseline's, kept) committed by `ostree commit` and by
#      `slipway compose commit` into two fresh archive repositories; the two commits must have
#      identical contents (`ostree diff` after `ostree pull-local`). Target: slipway <= 0.45x
#      (issue 19; it was 0.6x).
#   4. Commit size: slipway's repository after (1), and its object count.
#   5. Image: `slipway image` raw and qcow2: wall time and file sizes against the commit's.
#   6. Boot to SSH: the slow image tests (SeaBIOS and OVMF) record how long the image takes to
#      answer SSH, and whether QEMU ran with KVM or TCG.
#   7. Host updates: the update-size test (tests/compose_slow.rs,
#      adding_a_package_makes_an_update_the_size_of_the_change) records the bytes an upgrade
#      from v1 to v2 (one package added, a marker file) transfers by static delta and by object
#      pull, against the compressed size (archive objects) of the files that changed. (Boot and
#      rollback times come from the lifecycle chain, section 9.)
#      Targets: the delta at most 1.2x the changed files and at most 2x the package's .deb;
#      the same package added to a bound image (adding_a_package_to_a_service_image_...): its
#      static delta at most 1.5x the .deb. `bench/run.sh host` runs only this
#      step and rewrites its section of BENCHMARKS.md in place.
#   8. PXE serving: slipway's TFTP, HTTP and proxyDHCP servers (small programs in examples/
#      around the library's servers), each against a baseline started in the same run, in
#      network namespaces of their own: TFTP lock-step throughput of a 64 MiB file (atftp,
#      blksize 1468) against dnsmasq on loopback and through a relay adding 0.5 ms each way
#      (examples/udp_delay_relay.rs: the kernel has no netem), and windowsize 16 through it;
#      100 TFTP transfers and 200 HTTP downloads at once, every file's SHA-256 checked; HTTP
#      throughput against nginx (its own configuration, one worker); 1000 simulated PXE
#      clients (examples/pxe_dhcp_load.rs) over a veth pair: DISCOVER to 67, REQUEST to 4011,
#      none lost, 99th-percentile answer time; the DHCP and TFTP parsers' property tests with
#      many more cases. Targets: lock-step TFTP >= 1x dnsmasq, windowed >= 4x lock-step over
#      the delayed link, HTTP >= 0.8x nginx. A placeholder row takes `pxe_*` measurements of
#      the PXE install VM test ($SLIPWAY_BENCH_PXE_VM) when present. `bench/run.sh pxe` runs
#      only this step (minutes) and rewrites its section of BENCHMARKS.md in place.
#   8i. Network install, one machine at a time: the PXE lab (tests/pxe_slow.rs,
#      pxe_install_alone_uefi_then_bios_against_the_image) installs `uefi` (Secure Boot, TFTP)
#      then `bios` (iPXE, HTTP), each alone, then boots the prebuilt image of the same commit
#      under the same firmware and VM size. Targets: bytes sent to the machine from power-on
#      to installed (every frame on its tap) <= 1.15x the commit's archive objects; power-on
#      to SSH <= 3x the image's boot to SSH. Each phase reported. `bench/run.sh install` runs
#      only this step and rewrites its section of BENCHMARKS.md in place.
#   9. Service containers: the bytes an upgrade pulls when one package is added to one image
#      bound to the commit, against that package's .deb (target <= 1.5x) and installed size;
#      the compose of the Keystone image of treefiles/examples/openstack-keystone.json (its
#      images phase) against mmdebstrap of the same package set alone from the same warm
#      .deb cache (target <= 1.3x); and, from the lifecycle chain (tests/lifecycle_slow.rs),
#      the time from the green verdict to the service's unit active, and from upgrade and
#      rollback to the service answering; from the Keystone test (tests/keystone_slow.rs), the
#      600 MB image placed into docker's store against `tar` + `docker import` of the same root
#      in the same VM (target: >= 5x faster). `bench/run.sh services` runs only this step and
#      rewrites its section of BENCHMARKS.md in place.
#
# Cheap commands (no-op recompose, images) run 3 times (median reported); the others once.
# Targets are reported (PASS/FAIL), not enforced: the script exits non-zero only when a
# measured command fails or a correctness check (changed: false, identical commits, debos's
# package set) fails.
#
# Environment:
#   SLIPWAY_BENCH_DIR        work directory (default /var/tmp/slipway-bench); the apt/.deb cache
#                            shared by slipway and the baseline is $SLIPWAY_BENCH_DIR/cache
#   SLIPWAY_BENCH_SOURCES    apt sources file for the baseline, where debos's mirrors are read too
#                            (default: the host's /etc/apt/sources.list.d/debian.sources, else
#                            /etc/apt/sources.list)
#   SLIPWAY_BENCH_SKIP_BOOT  1: skip step 6 (marked "not measured" in the report)
#   SLIPWAY_BENCH_SKIP_HOST  1: skip step 7 (likewise)
#   SLIPWAY_BENCH_SKIP_PXE   1: skip step 8 (likewise)
#   SLIPWAY_BENCH_PROPTEST_CASES  property-test cases in step 8 (default 50000)
#   SLIPWAY_BENCH_SKIP_PXE_VM 1: skip the PXE lab's VM installs in step 8
#   SLIPWAY_BENCH_SKIP_SERVICES 1: skip step 9; SLIPWAY_BENCH_SKIP_SERVICES_VM=1: its VM test only
#   SLIPWAY_BENCH_PXE_VM     JSON lines with the PXE install VM test's `pxe_*` measurements, as
#                            tests/common/fixtures.rs's record_measurement writes them
#                            (default $SLIPWAY_BENCH_DIR/pxe-vm.jsonl)
#   SLIPWAY_BENCH_SKIP_DEBOS 1: skip step 1p (likewise); it is also skipped when debos is not
#                            installed (apt-get install --no-install-recommends debos: its
#                            Recommends include systemd-resolved, which replaces /etc/resolv.conf)
#   SLIPWAY_TEST_CACHE       the slow tests' cache (their composed host and images), see tests/
#
# `bench/run.sh compose-peer` measures only 1 and 1p (with the same set-up: build, warm cache)
# and writes $SLIPWAY_BENCH_DIR/results/compose-peer.md (printed too), not BENCHMARKS.md.
#
# `bench/run.sh recompose` (1r) measures 1 (the package cache emptied first, as in every cold
# compose here) and 1p, then into 1's repository the default host plus `hello` (a leaf
# package: target <= 0.35x the cold compose) and plus `cron` (maintainer scripts and a unit:
# reported), then the commit stage on the cold commit's tree checked out, `ostree commit` and
# `slipway compose commit` each into a repository it creates (target <= 0.45x); cold against
# debos: target <= 0.6x. It rewrites only its section of BENCHMARKS.md. A full run (no argument)
# measures 1r too, so every target is in one run: after 3, hello then cron into a hard-linked
# copy of 1's repository (1's ref and summary stay on the cold commit for 5 and 6); 1r's
# commit-stage row is 3's, target <= 0.45x.
#
# Paths in BENCHMARKS.md are written as $SRC (the checkout), $BENCH (the work directory) and
# $SLIPWAY_TEST_CACHE, not as this machine's.
set -euo pipefail

MODE=all
case "${1:-}" in
    "") ;;
    compose-peer) MODE=compose-peer ;;
    recompose) MODE=recompose ;;
    host) MODE=host ;;
    pxe) MODE=pxe ;;
    install) MODE=install ;;
    services) MODE=services ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bench/run.sh [compose-peer|recompose|host|pxe|install|services]" >&2; exit 2 ;;
esac

script_start=$(date +%s.%N)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${SLIPWAY_BENCH_DIR:-/var/tmp/slipway-bench}
CACHE=$BENCH/cache
RESULTS=$BENCH/results
LOGS=$BENCH/logs
TREEFILE=$SRC/treefiles/atomic-host.json
REF=slipway/bookworm/x86_64/atomic-host
SLIPWAY=$SRC/target/release/slipway
REPORT=$SRC/BENCHMARKS.md
TEST_CACHE=${SLIPWAY_TEST_CACHE:-/var/tmp/slipway-test-cache}
export PATH=$HOME/.cargo/bin:$PATH

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

say() {
    local t
    t=$(awk -v a="$script_start" -v b="$(date +%s.%N)" 'BEGIN { s = b - a; printf "%02d:%02d", s / 60, s % 60 }')
    echo "[bench +$t] $*" >&2
}
die() { say "ERROR: $*"; exit 1; }

declare -A T          # measured wall times, seconds
declare -A V          # other values
CHECK_FAILURES=()     # correctness checks that failed (reported, then exit 1)
COMMANDS=             # the exact measured commands, for the report

# CPU seconds all processors have been busy since boot (user, nice, system, irq, softirq, steal).
cpu_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100; exit }' /proc/stat; }

# run_timed KEY CMD...: run CMD, its stdout to $LOGS/KEY.out, stderr to $LOGS/KEY.err;
# T[KEY] = wall seconds, CPU[KEY] = its own CPU seconds (user + system, with its children),
# OTHER[KEY] = CPU seconds the rest of the machine used meanwhile (the noise; approximate: it
# includes kernel work such as writeback caused by the command). A failing command ends the
# benchmark with its stderr tail.
declare -A CPU OTHER
run_timed() {
    try_timed "$@" || die "$1 failed (exit $?); logs: $LOGS/$1.err"
}
# try_timed KEY CMD...: the same, but a failing command is reported (its stderr tail) and its
# exit status returned instead of ending the benchmark.
try_timed() {
    local key=$1 start end busy0 rc=0
    shift
    say "$key: $*"
    busy0=$(cpu_busy)
    times > "$LOGS/$key.times"     # the shell's children's CPU so far (second line)
    start=$(date +%s.%N)
    "$@" > "$LOGS/$key.out" 2> "$LOGS/$key.err" || rc=$?
    end=$(date +%s.%N)
    times >> "$LOGS/$key.times"
    if [ "$rc" != 0 ]; then
        tail -n 30 "$LOGS/$key.err" >&2
        say "$key failed (exit $rc); logs: $LOGS/$key.err"
        return "$rc"
    fi
    T[$key]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    CPU[$key]=$(awk 'function sec(x, a) { split(x, a, "m"); sub("s", "", a[2]); return a[1] * 60 + a[2] }
        NR == 2 { before = sec($1) + sec($2) } NR == 4 { printf "%.1f", sec($1) + sec($2) - before }' "$LOGS/$key.times")
    OTHER[$key]=$(awk -v a="$busy0" -v b="$(cpu_busy)" -v own="${CPU[$key]}" \
        'BEGIN { o = b - a - own; printf "%.1f", (o < 0 ? 0 : o) }')
    say "$key: ${T[$key]} s (own CPU ${CPU[$key]} s, rest of the machine ${OTHER[$key]} CPU-s)"
}

# A command line, shell-quoted.
quote() { local q; q=$(printf '%q ' "$@"); printf '%s' "${q% }"; }

# measure KEY CMD...: run CMD once (recorded for the report's command list).
measure() {
    COMMANDS+="$(quote "${@:2}")"$'\n'
    run_timed "$@"
}

# measure3 KEY CMD...: run CMD three times; T[KEY] = the median, V[KEY.runs] = all three.
measure3() {
    local key=$1 runs=() i
    COMMANDS+="$(quote "${@:2}")  # 3 times, median"$'\n'
    for i in 1 2 3; do
        run_timed "$key.$i" "${@:2}"
        runs+=("${T[$key.$i]}")
    done
    T[$key]=$(printf '%s\n' "${runs[@]}" | sort -g | sed -n 2p)
    for i in 1 2 3; do
        if [ "${T[$key.$i]}" = "${T[$key]}" ]; then
            CPU[$key]=${CPU[$key.$i]}
            OTHER[$key]=${OTHER[$key.$i]}
        fi
    done
    V[$key.runs]="${runs[*]}"
    say "$key: median ${T[$key]} s (${runs[*]})"
}

# scrub_paths: the report names paths by the script's variables ($SRC the checkout, $BENCH the
# work directory, $SLIPWAY_TEST_CACHE the slow tests' cache), not by this machine's; the
# longest path is replaced first, so one inside another keeps its own name.
scrub_paths() {
    local args=() p
    while read -r _ p; do
        case "$p" in
            SRC) args+=(-e "s#$SRC#\$SRC#g") ;;
            BENCH) args+=(-e "s#$BENCH#\$BENCH#g") ;;
            TEST_CACHE) args+=(-e "s#$TEST_CACHE#\$SLIPWAY_TEST_CACHE#g") ;;
        esac
    done < <(printf '%s SRC\n%s BENCH\n%s TEST_CACHE\n' "${#SRC}" "${#BENCH}" "${#TEST_CACHE}" | sort -rn)
    sed "${args[@]}"
}

# replace_section NAME: put $RESULTS/NAME.md into BENCHMARKS.md between its
# `<!-- NAME:begin -->` and `<!-- NAME:end -->` lines (appended when they are not there yet).
replace_section() {
    scrub_paths < "$RESULTS/$1.md" > "$RESULTS/$1.md.tmp"
    mv "$RESULTS/$1.md.tmp" "$RESULTS/$1.md"
    if grep -q "^<!-- $1:begin -->" "$REPORT"; then
        awk -v f="$RESULTS/$1.md" -v b="<!-- $1:begin -->" -v e="<!-- $1:end -->" '
            $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip' "$REPORT" > "$REPORT.tmp"
    else
        { cat "$REPORT"; echo; cat "$RESULTS/$1.md"; } > "$REPORT.tmp"
    fi
    mv "$REPORT.tmp" "$REPORT"
}

# One row of the load table.
load_row() {
    local share
    share=$(awk -v o="${OTHER[$1]}" -v w="${T[$1]}" -v n="${V[nproc]}" 'BEGIN { printf "%.0f", 100 * o / (w * n) }')
    printf '| %s | %.1f s | %s s | %s s (%s%% of the machine) |\n' "$1" "${T[$1]}" "${CPU[$1]}" "${OTHER[$1]}" "$share"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# verdict VALUE OP LIMIT: PASS or FAIL
verdict() {
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? (v <= l) : (op == ">=") ? (v >= l) : (v < l)
        print (ok ? "PASS" : "FAIL") }'
}
human() {
    awk -v n="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1
        while (n >= 1024 && i < 5) { n /= 1024; i++ }
        if (i == 1) printf "%d B", n; else printf "%.1f %s", n, u[i] }'
}
# The value of a top-level scalar key in a pretty-printed composejson.
json_scalar() { sed -n "s/^  \"$2\": \\(.*\\),\\{0,1\\}\$/\\1/p" "$1" | sed 's/,$//; s/^"//; s/"$//' | head -n1; }
# "phase seconds" lines from the composejson's "phases" object.
json_phases() {
    awk '/"phases": \{/ { on = 1; next } on && /\}/ { on = 0 }
         on { gsub(/[",:]/, ""); printf "%s %.2f\n", $1, $2 }' "$1"
}
# Object counts of a repository by type ("filez 15424 dirtree 2230 ...").
object_counts() {
    find "$1/objects" -type f | awk -F. '{ c[$NF]++; n++ } END { printf "%d", n; for (k in c) printf " %s=%d", k, c[k]; print "" }'
}
deb_count() { find "$CACHE/apt/archives" -maxdepth 1 -name '*.deb' | wc -l; }
# name=version lines of a commit's slipway.packages metadata.
commit_packages() {
    ostree show --repo="$1" --print-metadata-key=slipway.packages "$2" |
        grep -o "('[^']*', '[^']*')" | sed "s/('\\([^']*\\)', '\\([^']*\\)')/\\1=\\2/"
}
# name=version lines of the packages installed in a commit (its dpkg database, OSTree layout).
dpkg_packages() {
    ostree cat --repo="$1" "$2" /usr/share/dpkg/database/status |
        awk '/^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Status:/ { s = $0 }
             /^$/ { if (s ~ / installed$/) print p "=" v; p = v = s = "" }
             END { if (s ~ / installed$/) print p "=" v }'
}
# "URI SUITE" for each deb entry of apt sources files (deb822 or one-line; disabled ones skipped).
apt_entries() {
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        case $f in
        *.sources)
            awk 'function flush(  i, j, u, s) {
                     if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
                         split(uris, u, " "); split(suites, s, " ")
                         for (i = 1; i in u; i++) for (j = 1; j in s; j++) print u[i], s[j] }
                     types = uris = suites = enabled = "" }
                 /^[ \t]*#/ { next }
                 /^[ \t]*$/ { flush(); next }
                 { k = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
                 k == "types:" { types = $0 } k == "uris:" { uris = $0 } k == "suites:" { suites = $0 }
                 k == "enabled:" { enabled = $0 }
                 END { flush() }' "$f" ;;
        *)
            awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++
                 print $i, $(i + 1) }' "$f" ;;
        esac
    done
}
# MIRROR (the URI serving SUITE), UPDATES (yes if SUITE-updates is configured) and SECURITY
# (the URI serving SUITE-security, or empty) of the host's apt sources: $SOURCES, or when it
# has no entry for SUITE, all of /etc/apt/sources.list.d/*.sources and /etc/apt/sources.list.
host_mirrors() {
    local suite=$1 entries
    entries=$(apt_entries "$SOURCES")
    awk -v s="$suite" '$2 == s { f = 1 } END { exit !f }' <<< "$entries" ||
        entries=$(apt_entries /etc/apt/sources.list.d/*.sources /etc/apt/sources.list)
    MIRROR=$(awk -v s="$suite" '$2 == s { print $1; exit }' <<< "$entries")
    SECURITY=$(awk -v s="$suite-security" '$2 == s { print $1; exit }' <<< "$entries")
    UPDATES=no
    if awk -v s="$suite-updates" '$2 == s { f = 1 } END { exit !f }' <<< "$entries"; then UPDATES=yes; fi
    MIRROR=${MIRROR%/} SECURITY=${SECURITY%/}
}
# tf_array FILE KEY: a treefile's KEY array after its includes (arrays concatenate), one item a
# line (an item that is itself an array, such as an add-files pair, joined with spaces).
tf_array() {
    local f=$1 key=$2 inc
    while IFS= read -r inc; do
        [ -z "$inc" ] || tf_array "$(dirname "$f")/$inc" "$key"
    done < <(jq -r '.include // [] | if type == "string" then [.] else . end | .[]' "$f")
    jq -r --arg k "$key" '.[$k] // [] | .[] | if type == "array" then join(" ") else . end' "$f"
}
# The packages of the debos recipe's apt action.
recipe_packages() {
    awk '/^  - action:/ { apt = ($3 == "apt"); pk = 0; next }
         apt && /^    packages:/ { pk = 1; next }
         pk && /^      - / { print $2; next }
         pk && !/^ *#/ { pk = 0 }' "$1"
}

# ----------------------------------------------------------------------------------------------
# 7. Host updates (a function: `bench/run.sh host` runs only this)
# ----------------------------------------------------------------------------------------------

HOST_JSONL=$RESULTS/host.jsonl
measure_host() {
    mkdir -p "$RESULTS" "$LOGS"
    rm -f "$HOST_JSONL"
    host_cmd=(env SLIPWAY_BENCH_OUT="$HOST_JSONL" SLIPWAY_HOST_EXE="$SLIPWAY" cargo test
        --test compose_slow -- --ignored --exact adding_a_package_makes_an_update_the_size_of_the_change
        adding_a_package_to_a_service_image_makes_an_update_the_size_of_the_change
        --test-threads=1 --nocapture)
    COMMANDS+="(cd $SRC && $(quote "${host_cmd[@]}"))"$'\n'
    say "host: ${host_cmd[*]} (composes the default host plus one package on top of it)"
    local start
    start=$(date +%s.%N)
    if (cd "$SRC" && "${host_cmd[@]}") > "$LOGS/host.out" 2> "$LOGS/host.err"; then
        V[host]=ok
    else
        V[host]=failed
        tail -n 40 "$LOGS/host.err" >&2
        say "host: the update-size test FAILED; logs: $LOGS/host.err"
    fi
    T[host_test]=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
}
host_value() { # NAME
    [ -f "$HOST_JSONL" ] || return 0
    grep -E "\"name\": ?\"$1\"" "$HOST_JSONL" | tail -n 1 | sed -n 's/.*"value": *\([0-9.eE+-]*\).*/\1/p'
}
# The section of BENCHMARKS.md, between markers so that `bench/run.sh host` can replace it.
host_section() {
    local changed delta pulled deb idelta ideb
    changed=$(host_value host_update_changed_files_bytes)
    delta=$(host_value host_update_static_delta_bytes)
    pulled=$(host_value host_update_object_pull_bytes)
    deb=$(host_value host_update_package_deb_bytes)
    idelta=$(host_value image_update_static_delta_bytes)
    ideb=$(host_value image_update_package_deb_bytes)
    echo "<!-- host:begin -->"
    echo "## 7. Host updates"
    echo
    echo "Measured by \`bench/run.sh host\` on $(date -u '+%Y-%m-%d %H:%M UTC') (slipway $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)), the update-size test (\`tests/compose_slow.rs\`, ${T[host_test]:-?} s, ${V[host]:-not run}) composes v2 (the default host plus the package \`hello\` and a marker file) on top of v1 and records:"
    echo
    if [ -n "$changed" ] && [ -n "$delta" ]; then
        local rd rp
        rd=$(ratio "$delta" "$changed"); rp=$(ratio "$pulled" "$changed")
        echo "| measurement | value | against | ratio | target | result |"
        echo "| --- | --- | --- | --- | --- | --- |"
        echo "| v1 -> v2 static delta (written by compose) | $(human "$delta") ($delta B) | files that changed, compressed as archive objects: $(human "$changed") ($changed B) | ${rd}x | <= 1.2x | $(verdict "$rd" "<=" 1.2) |"
        echo "| v1 -> v2 object pull (no delta) | $(human "$pulled") ($pulled B) | the same | ${rp}x | | info |"
        if [ -n "$deb" ]; then
            local rdeb
            rdeb=$(ratio "$delta" "$deb")
            echo "| v1 -> v2 static delta | $(human "$delta") ($delta B) | the added package's .deb (\`hello\`): $(human "$deb") ($deb B) | ${rdeb}x | <= 2x | $(verdict "$rdeb" "<=" 2) |"
        fi
        if [ -n "$idelta" ] && [ -n "$ideb" ]; then
            local ri
            ri=$(ratio "$idelta" "$ideb")
            echo "| static delta of \`hello\` added to a bound image (busybox-static, small host) | $(human "$idelta") ($idelta B) | the package's .deb: $(human "$ideb") ($ideb B) | ${ri}x | <= 1.5x | $(verdict "$ri" "<=" 1.5) |"
        fi
    else
        echo "**Not measured**: the update-size test did not record its numbers (see \`\$SLIPWAY_BENCH_DIR/logs/host.err\`)."
    fi
    echo
    echo "The changed files are the regular files of v2 whose content checksum is not v1's at the same path; their size is that of their \`.filez\` objects (zlib, as the archive repository stores and serves them). The object pull is what \`ostree pull-local\` of v2 adds to a repository holding v1. Raw lines: \`\$SLIPWAY_BENCH_DIR/results/host.jsonl\`."
    echo "<!-- host:end -->"
}

# ----------------------------------------------------------------------------------------------
# 8i. Network install, one machine at a time (a function: `bench/run.sh install` runs only this)
# ----------------------------------------------------------------------------------------------

INSTALL_JSONL=$RESULTS/install.jsonl
measure_install() {
    mkdir -p "$RESULTS" "$LOGS"
    rm -f "$INSTALL_JSONL"
    install_cmd=(env SLIPWAY_BENCH_OUT="$INSTALL_JSONL" SLIPWAY_HOST_EXE="$SLIPWAY" cargo test
        --test pxe_slow -- --ignored --exact pxe_install_alone_uefi_then_bios_against_the_image
        pxe_install_alone_bios_pulling_every_object --test-threads=1 --nocapture)
    COMMANDS+="(cd $SRC && $(quote "${install_cmd[@]}"))"$'\n'
    say "install: ${install_cmd[*]} (the PXE lab with one machine at a time, then the prebuilt image)"
    local start
    start=$(date +%s.%N)
    if (cd "$SRC" && "${install_cmd[@]}") > "$LOGS/install.out" 2> "$LOGS/install.err"; then
        V[install]=ok
    else
        V[install]=failed
        tail -n 40 "$LOGS/install.err" >&2
        say "install: the PXE install test FAILED; logs: $LOGS/install.err"
    fi
    T[install_test]=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
}
install_value() { # NAME
    [ -f "$INSTALL_JSONL" ] || return 0
    grep -E "\"name\": ?\"$1\"" "$INSTALL_JSONL" | tail -n 1 | sed -n 's/.*"value": *\([0-9.eE+-]*\).*/\1/p'
}
install_samples() { # NAME: every value recorded under NAME, rounded, space-separated
    [ -f "$INSTALL_JSONL" ] || return 0
    grep -E "\"name\": ?\"$1\"" "$INSTALL_JSONL" | sed -n 's/.*"value": *\([0-9.eE+-]*\).*/\1/p' |
        awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 }'
}
install_section() {
    local archive m bytes rb total image rt phases p v samples imagecell
    archive=$(install_value pxe_archive_bytes)
    echo "<!-- install:begin -->"
    echo "## 8i. Network install, one machine at a time"
    echo
    echo "Measured by \`bench/run.sh install\` on $(date -u '+%Y-%m-%d %H:%M UTC') (slipway $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)): the PXE lab of \`tests/pxe_slow.rs\` (\`pxe_install_alone_uefi_then_bios_against_the_image\`, ${T[install_test]:-?} s, ${V[install]:-not run}) with one machine at a time (one vCPU, 3 GiB, $(grep -h -o -m1 '\"accel\": *\"[a-z]*\"' "$INSTALL_JSONL" 2>/dev/null | sed 's/.*\"\([a-z]*\)\"$/\1/' || echo '?')), then the prebuilt image of the same commit booted to SSH under the same firmware and VM size (the median of \`SLIPWAY_BENCH_IMAGE_BOOTS\`, default 3, first boots, each from a fresh overlay). Bytes are every frame the lab's bridge sent to the machine's tap (TFTP and HTTP with their headers) from power-on until the server recorded the machine installed; the commit's size is its archive objects in the served repository ($(human "${archive:-0}"))."
    echo
    if [ -z "$archive" ]; then
        echo "**Not measured**: the test did not record its numbers (see \`\$SLIPWAY_BENCH_DIR/logs/install.err\`)."
    else
        echo "| machine | bytes to installed | against the commit's archive objects | target | result | power-on to SSH | the image's boot to SSH | ratio | target | result |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        for m in uefi bios bios_unseeded; do
            bytes=$(install_value "pxe_${m}_bytes_to_installed")
            total=$(install_value "pxe_${m}_install_to_ssh_s")
            image=$(install_value "pxe_image_${m%_unseeded}_boot_to_ssh_s")
            [ -n "$bytes" ] && [ -n "$total" ] && [ -n "$image" ] || { echo "| $m | not measured | | | | | | | | |"; continue; }
            rb=$(ratio "$bytes" "$archive"); rt=$(ratio "$total" "$image")
            samples=$(install_samples "pxe_image_${m%_unseeded}_boot_to_ssh_sample_s")
            imagecell="$(printf '%.0f' "$image") s"
            [ -n "$samples" ] && imagecell+=" (median of $(wc -w <<< "$samples"): $samples)"
            if [ "$m" = bios_unseeded ]; then
                echo "| \`bios\` pulling every object (\`slipway.seed=off\`, as before) | $(human "$bytes") | ${rb}x | | info | $(printf '%.0f' "$total") s | $imagecell | ${rt}x | | info |"
            else
                echo "| \`$m\` | $(human "$bytes") | ${rb}x | <= 1.15x | $(verdict "$rb" "<=" 1.15) | $(printf '%.0f' "$total") s | $imagecell | ${rt}x | <= 3x | $(verdict "$rt" "<=" 3) |"
            fi
        done
        echo
        echo "Phases (seconds from power-on; \`disk_and_seed\`: partitions, file systems and the import of the live root's tree; \`pull\`: the signed commit object and what the seed lacked):"
        echo
        echo "| machine | firmware to installer | disk and seed | pull | deploy | bootloader and post | reboot to SSH |"
        echo "| --- | --- | --- | --- | --- | --- | --- |"
        for m in uefi bios bios_unseeded; do
            phases=""
            for p in firmware_to_installer disk_and_seed pull deploy bootloader_and_post reboot_to_ssh; do
                v=$(install_value "pxe_${m}_${p}_s")
                phases+=" $( [ -n "$v" ] && printf '%.0f s' "$v" || echo '-') |"
            done
            [ "$m" = bios_unseeded ] && echo "| \`bios\`, no seed (disk and pull in one) |$phases" || echo "| \`$m\` |$phases"
        done
    fi
    echo
    echo "Raw lines: \`\$SLIPWAY_BENCH_DIR/results/install.jsonl\`."
    echo "<!-- install:end -->"
}

# ----------------------------------------------------------------------------------------------
# 9. Service containers (functions: `bench/run.sh services` runs only this)
# ----------------------------------------------------------------------------------------------

SVC_WORK=$BENCH/services
SVC_JSONL=$RESULTS/services.jsonl
declare -A SV   # services results

# A small host (no kernel: only the image matters) binding IMAGE_JSON as its one image.
svc_treefile() { # FILE IMAGE_JSON
    jq -n --argjson img "$2" '{"ref": "bench/services", "packages": ["hello"], "container-images": [$img]}' > "$1"
}
svc_sources() {
    if [ -n "${SLIPWAY_BENCH_SOURCES:-}" ]; then echo "$SLIPWAY_BENCH_SOURCES"
    elif [ -f /etc/apt/sources.list.d/debian.sources ]; then echo /etc/apt/sources.list.d/debian.sources
    else echo /etc/apt/sources.list; fi
}
svc_objects() { find "$1/objects" -type f | sed 's#.*/objects/##; s#/##' | sort; }
svc_bytes_of() { # REPO < object names
    local repo=$1 o total=0
    while read -r o; do total=$((total + $(stat -c %s "$repo/objects/${o:0:2}/${o:2}"))); done
    echo "$total"
}
measure_services() {
    mkdir -p "$RESULTS" "$LOGS"
    rm -rf "$SVC_WORK"; mkdir -p "$SVC_WORK"
    [ "${SLIPWAY_BENCH_SKIP_SERVICES_VM:-0}" = 1 ] || rm -f "$SVC_JSONL"
    local repo=$SVC_WORK/repo base pkg=hello
    # (a) One package added to one image: what a pull of v2 adds to a repository holding v1,
    # against that package's .deb and installed size.
    base='{"name": "svc", "tag": "stable", "packages": ["busybox-static"], "cmd": ["busybox", "httpd", "-f"]}'
    svc_treefile "$SVC_WORK/v1.json" "$base"
    svc_treefile "$SVC_WORK/v2.json" "$(jq -c --arg p "$pkg" '.packages += [$p]' <<< "$base")"
    for v in v1 v2; do
        COMMANDS+="$(quote "$SLIPWAY" compose tree --repo "$repo" --cachedir "$CACHE" "$SVC_WORK/$v.json")"$'\n'
        run_timed "services_compose_$v" "$SLIPWAY" compose tree --repo "$repo" --cachedir "$CACHE" \
            --write-composejson-to "$SVC_WORK/$v.compose.json" "$SVC_WORK/$v.json"
    done
    local c1 c2 client
    c1=$(jq -r .commit "$SVC_WORK/v1.compose.json"); c2=$(jq -r .commit "$SVC_WORK/v2.compose.json")
    client=$SVC_WORK/client
    ostree --repo="$client" init --mode=archive
    ostree --repo="$client" pull-local "$repo" "$c1" > /dev/null
    svc_objects "$client" > "$SVC_WORK/before"
    ostree --repo="$client" pull-local "$repo" "$c2" > /dev/null
    svc_objects "$client" > "$SVC_WORK/after"
    SV[pulled]=$(comm -13 "$SVC_WORK/before" "$SVC_WORK/after" | svc_bytes_of "$client")
    SV[pulled_objects]=$(comm -13 "$SVC_WORK/before" "$SVC_WORK/after" | wc -l)
    local deb
    deb=$(find "$CACHE/apt/archives" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n1)
    SV[deb]=$(stat -c %s "$deb")
    SV[installed]=$(( $(dpkg-deb -f "$deb" Installed-Size) * 1024 ))
    SV[image]=$(ostree --repo="$repo" ls -R -C "$c2" /usr/lib/slipway/images | awk '$1 ~ /^-/ { s += $4 } END { print s + 0 }')
    # (b) The Keystone image (treefiles/examples/openstack-keystone.json's) composed on the small
    # host: the images phase against mmdebstrap of the same package set alone, both from the
    # warm .deb cache (the compose of the image warmed it; mmdebstrap gets it hardlinked).
    local kimg kpkgs
    kimg=$(jq -c '."container-images"[0] | .["add-files"] |= map([("'"$SRC"'/treefiles/examples/" + .[0]), .[1]])' "$SRC/treefiles/examples/openstack-keystone.json")
    svc_treefile "$SVC_WORK/keystone.json" "$kimg"
    COMMANDS+="$(quote "$SLIPWAY" compose tree --repo "$SVC_WORK/krepo" --cachedir "$CACHE" "$SVC_WORK/keystone.json")"$'\n'
    "$SLIPWAY" compose tree --repo "$SVC_WORK/krepo-warm" --cachedir "$CACHE" "$SVC_WORK/keystone.json" > /dev/null 2> "$LOGS/services-keystone-warm.err" ||
        { tail -n 30 "$LOGS/services-keystone-warm.err" >&2; die "the Keystone compose failed"; }
    run_timed services_keystone_compose "$SLIPWAY" compose tree --repo "$SVC_WORK/krepo" --cachedir "$CACHE" \
        --write-composejson-to "$SVC_WORK/keystone.compose.json" "$SVC_WORK/keystone.json"
    SV[keystone_images]=$(jq '.phases.images' "$SVC_WORK/keystone.compose.json")
    kpkgs=$(jq -r '."container-images"[0].packages | join(",")' "$SVC_WORK/keystone.json")
    local mm=(mmdebstrap --variant=minbase --mode=root --format=directory --skip=download/empty
        "--aptopt=Acquire::Languages \"none\"" "--include=$kpkgs"
        "--setup-hook=mkdir -p \"\$1/var/cache/apt/archives\" && ln $CACHE/apt/archives/*.deb \"\$1/var/cache/apt/archives/\" 2>/dev/null || true"
        bookworm "$SVC_WORK/mmdebstrap-root" "$(svc_sources)")
    COMMANDS+="$(quote "${mm[@]}")"$'\n'
    rm -rf "$SVC_WORK/mmdebstrap-root"
    run_timed services_mmdebstrap "${mm[@]}"
    SV[mmdebstrap]=${T[services_mmdebstrap]}
    SV[keystone_bytes]=$(jq '[.content_bytes_written] | .[0]' "$SVC_WORK/keystone.compose.json")
    rm -rf "$SVC_WORK/mmdebstrap-root" "$SVC_WORK/krepo-warm"
    # (c) Green verdict -> the service answering: the slow services test in a VM.
    if [ "${SLIPWAY_BENCH_SKIP_SERVICES_VM:-0}" = 1 ]; then
        V[services_vm]="skipped (SLIPWAY_BENCH_SKIP_SERVICES_VM=1)"
        return 0
    fi
    local cmd=(env SLIPWAY_BENCH_OUT="$SVC_JSONL" SLIPWAY_HOST_EXE="$SLIPWAY" cargo test
        --test lifecycle_slow -- --ignored --test-threads=1 --nocapture)
    COMMANDS+="(cd $SRC && $(quote "${cmd[@]}"))"$'\n'
    say "services: ${cmd[*]}"
    if (cd "$SRC" && "${cmd[@]}") > "$LOGS/services.out" 2> "$LOGS/services.err"; then
        V[services_vm]=ok
    else
        V[services_vm]=failed
        tail -n 40 "$LOGS/services.err" >&2
    fi
    # The Keystone example booted (tests/keystone_slow.rs).
    cmd=(env SLIPWAY_BENCH_OUT="$SVC_JSONL" SLIPWAY_HOST_EXE="$SLIPWAY" cargo test
        --test keystone_slow -- --ignored --test-threads=1 --nocapture)
    COMMANDS+="(cd $SRC && $(quote "${cmd[@]}"))"$'\n'
    say "services: ${cmd[*]}"
    if (cd "$SRC" && "${cmd[@]}") > "$LOGS/keystone.out" 2> "$LOGS/keystone.err"; then
        V[keystone_vm]=ok
    else
        V[keystone_vm]=failed
        tail -n 40 "$LOGS/keystone.err" >&2
    fi
}
svc_value() { # NAME
    [ -f "$SVC_JSONL" ] || return 0
    { grep -E "\"name\": ?\"$1\"" "$SVC_JSONL" || true; } | tail -n 1 | sed -n 's/.*"value": *\([0-9.eE+-]*\).*/\1/p'
}
services_section() {
    local rp ri rk
    rp=$(ratio "${SV[pulled]}" "${SV[deb]}")
    ri=$(ratio "${SV[pulled]}" "${SV[installed]}")
    rk=$(ratio "${SV[keystone_images]}" "${SV[mmdebstrap]}")
    echo "<!-- services:begin -->"
    echo "## 9. Service containers"
    echo
    echo "Measured by \`bench/run.sh services\` on $(date -u '+%Y-%m-%d %H:%M UTC') (slipway $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)):"
    echo
    echo "| measurement | value | against | ratio | target | result |"
    echo "| --- | --- | --- | --- | --- | --- |"
    echo "| pull of an upgrade that adds one package (\`hello\`) to one image (busybox-static, $(human "${SV[image]}") of files) | $(human "${SV[pulled]}") (${SV[pulled]} B, ${SV[pulled_objects]} objects) | the package's .deb: $(human "${SV[deb]}") | ${rp}x | <= 1.5x | $(verdict "$rp" "<=" 1.5) |"
    echo "| the same | | its installed size: $(human "${SV[installed]}") | ${ri}x | | info |"
    echo "| Keystone image: compose's images phase (mmdebstrap, add-files, postprocess, digest) | $(printf '%.1f' "${SV[keystone_images]}") s | mmdebstrap of the same package set alone, same warm .deb cache: ${SV[mmdebstrap]} s | ${rk}x | <= 1.3x | $(verdict "$rk" "<=" 1.3) |"
    local ready first rollback
    ready=$(svc_value services_verdict_to_service_active)
    first=$(svc_value services_upgrade_to_first_answer)
    rollback=$(svc_value services_rollback_to_answer)
    round() { [ -n "$1" ] && printf '%.1f' "$1" || true; }
    ready=$(round "$ready"); first=$(round "$first"); rollback=$(round "$rollback")
    echo "| green verdict -> service active (VM, TCG) | ${ready:-?} s | | | | info |"
    echo "| \`host upgrade --reboot\` -> the service answers (v1, image placed) | ${first:-?} s | | | | info |"
    echo "| \`host rollback --reboot\` -> the older service answers (image tagged again) | ${rollback:-?} s | | | | info |"
    local kc kv
    kc=$(round "$(svc_value keystone_compose)")
    kv=$(round "$(svc_value keystone_ssh_to_version_document)")
    echo "| Keystone example: compose (host and image, cold work directory) | ${kc:-?} s | | | | info |"
    echo "| Keystone example: first boot, SSH -> \`/v3\` answers (image placed, db_sync, bootstrap) | ${kv:-?} s | | | | info |"
    local kp ki kcri rload
    kp=$(svc_value keystone_image_placed); ki=$(svc_value keystone_image_import)
    kcri=$(round "$(svc_value keystone_image_placed_cri)")
    if [ -n "$kp" ] && [ -n "$ki" ]; then
        rload=$(ratio "$ki" "$kp")
        echo "| Keystone image (600 MB) made available to docker: placed into its store from the deployment (VM, TCG) | $(round "$kp") s | \`tar\` + \`docker import\` of the same root, same VM: $(round "$ki") s | ${rload}x faster | >= 5x | $(verdict "$rload" ">=" 5) |"
        echo "| the same image placed into containerd (\`k8s.io\`, snapshot + manifest) | ${kcri:-?} s | | | | info |"
    fi
    echo
    echo "The pull is what \`ostree pull-local\` of v2 adds to an archive repository holding v1 (objects as served: zlib content, metadata). The VM rows come from \`tests/lifecycle_slow.rs\` (${V[services_vm]:-not run}) and \`tests/keystone_slow.rs\` (${V[keystone_vm]:-not run}) through \`SLIPWAY_BENCH_OUT\`; with \`SLIPWAY_BENCH_SKIP_SERVICES_VM=1\` the lines an earlier run left in \`\$SLIPWAY_BENCH_DIR/results/services.jsonl\` are shown, \`?\` where there are none. The pull against the .deb counts what dpkg changes besides the package's files: its status database and the package's \`info\` files are objects of their own."
    echo "<!-- services:end -->"
}

# ----------------------------------------------------------------------------------------------
# 8. PXE serving (functions: `bench/run.sh pxe` runs only this)
# ----------------------------------------------------------------------------------------------

PXE_WORK=$BENCH/pxe
PXE_NS=slipway-bench-pxe       # loopback only: the TFTP and HTTP servers, relays and clients
PXE_NS_SRV=slipway-bench-dhcps # slipway's proxyDHCP, veth sbpv0 10.231.0.1/24
PXE_NS_CLI=slipway-bench-dhcpc # the simulated PXE clients, veth sbpv1 10.231.0.2/24
PXE_EXAMPLES=(pxe_tftp_serve pxe_http_serve pxe_dhcp_serve pxe_dhcp_load udp_delay_relay)
PXE_BLKSIZE=1468
PXE_DELAY_US=500
PXE_CASES=${SLIPWAY_BENCH_PROPTEST_CASES:-50000}
PXE_VM_JSONL=${SLIPWAY_BENCH_PXE_VM:-$BENCH/pxe-vm.jsonl}
PXE_PIDS=()
PXE_COMMANDS=
PXE_KEYS=()
declare -A PX   # PXE results

pxe_cleanup() {
    local p ns
    for p in "${PXE_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${PXE_PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    PXE_PIDS=()
    for ns in "$PXE_NS" "$PXE_NS_SRV" "$PXE_NS_CLI"; do
        ! ip netns list | grep -qw "$ns" || ip netns del "$ns"
    done
}

# pxe_start NAME CMD...: CMD in the background (its output in $LOGS/pxe-NAME.log), killed by
# pxe_cleanup. CMD must be a program, not a function (the PID would be a subshell's); `ip netns
# exec` execs its command, so the PID is the server's.
pxe_start() {
    local name=$1
    shift
    PXE_COMMANDS+="$(quote "$@") &"$'\n'
    "$@" > "$LOGS/pxe-$name.log" 2>&1 &
    PXE_PIDS+=($!)
}
# pxe_ready NAME CMD...: wait up to 10 s for CMD to succeed.
pxe_ready() {
    local name=$1 i
    shift
    for i in $(seq 100); do
        "$@" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "pxe: $name did not start: $(tail -n 5 "$LOGS/pxe-$name.log" | tr '\n' ' ')"
    return 1
}
in_ns() { ip netns exec "$PXE_NS" "$@"; }

# pxe_timed KEY CMD...: try_timed, recorded for the section's command list and load table.
pxe_timed() {
    local shown
    shown=$(quote "${@:2}")
    PXE_COMMANDS+="${shown/#in_ns/ip netns exec $PXE_NS}"$'\n'
    PXE_KEYS+=("$1")
    try_timed "$@"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mibps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }
# pxe_sum_ok FILE WANT: the file's SHA-256 is WANT.
pxe_sum_ok() { [ -f "$1" ] && [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$2" ]; }
# UDP datagrams this namespace's sockets dropped for a full receive buffer.
udp_rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }

# tftp_get KEY SERVER PORT OUT [ATFTP OPTIONS...]: one timed download of big.bin, checked.
tftp_get() {
    local key=$1 host=$2 port=$3 out=$4
    shift 4
    rm -f "$out"
    if pxe_timed "$key" in_ns atftp --option "blksize $PXE_BLKSIZE" "$@" -g -r big.bin -l "$out" "$host" "$port" &&
        pxe_sum_ok "$out" "${PX[big_sha]}"; then
        return 0
    fi
    CHECK_FAILURES+=("8: $key: the download failed or its SHA-256 is wrong (logs: $LOGS/$key.err)")
    T[$key]=
    return 1
}

# Many downloads at once, each client's exit status in DIR/I.rc. Subshells: their `wait` must
# not wait for the servers.
many_tftp() ( # N DIR
    for ((i = 0; i < $1; i++)); do
        (in_ns atftp --option "blksize $PXE_BLKSIZE" -g -r "c/$i.bin" -l "$2/$i.bin" 127.0.0.1 6969 \
            > "$2/$i.log" 2>&1; echo $? > "$2/$i.rc") &
    done
    wait
)
many_http() ( # N DIR PORT
    for ((i = 0; i < $1; i++)); do
        (in_ns curl -sS --fail -o "$2/$i.bin" "http://127.0.0.1:$3/c/$((i % 100)).bin" \
            > "$2/$i.log" 2>&1; echo $? > "$2/$i.rc") &
    done
    wait
)
# many_ok N DIR FILES: how many of the N downloads exited 0 with the right checksum (file i of
# the N is c/(i mod FILES).bin).
many_ok() {
    local i ok=0
    for ((i = 0; i < $1; i++)); do
        [ "$(cat "$2/$i.rc" 2> /dev/null)" = 0 ] && pxe_sum_ok "$2/$i.bin" "${PX[c_sha.$((i % $3))]}" &&
            ok=$((ok + 1))
    done
    echo "$ok"
}

# The HTTP throughput runs: curl's own total time (transfer, not process start) of big.bin.
http_get() { # KEY PORT
    pxe_timed "$1" in_ns curl -sS --fail -o /dev/null -w '%{time_total} %{size_download}\n' \
        "http://127.0.0.1:$2/big.bin" || return 1
    read -r 'PX[$1.t]' 'PX[$1.bytes]' < "$LOGS/$1.out"
    [ "${PX[$1.bytes]}" = "${PX[big_bytes]}" ] ||
        { CHECK_FAILURES+=("8: $1: ${PX[$1.bytes]} bytes, not ${PX[big_bytes]}"); return 1; }
}

measure_pxe() {
    local i p k runs_d runs_s out dir before
    [ -n "${V[nproc]:-}" ] || V[nproc]=$(nproc)
    for p in ip atftp dnsmasq nginx curl sha256sum jq; do
        command -v "$p" > /dev/null || { PX[status]="not measured: $p is missing (scripts/install-deps.sh bench)"; say "pxe: ${PX[status]}"; return 0; }
    done
    PX[loadavg_start]=$(cut -d' ' -f1-3 /proc/loadavg)
    PX[date]=$(date -u '+%Y-%m-%d %H:%M UTC')
    PX[revision]=$(git -C "$SRC" describe --always --dirty 2> /dev/null || echo unknown)
    PX[tools]="dnsmasq $(dnsmasq --version | awk 'NR == 1 { print $3 }'), nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'), atftp $(dpkg-query -W -f='${Version}' atftp 2> /dev/null), curl $(curl --version | awk 'NR == 1 { print $2 }')"
    mkdir -p "$RESULTS" "$LOGS"
    rm -rf "$PXE_WORK"
    mkdir -p "$PXE_WORK/root/c" "$PXE_WORK/out" "$PXE_WORK/nginx"
    trap pxe_cleanup EXIT
    trap 'exit 130' INT TERM
    pxe_cleanup

    # The files: 64 MiB for throughput, 100 different 2 MiB files for the concurrent runs.
    head -c $((64 << 20)) /dev/urandom > "$PXE_WORK/root/big.bin"
    PX[big_bytes]=$(stat -c %s "$PXE_WORK/root/big.bin")
    PX[big_sha]=$(sha256sum < "$PXE_WORK/root/big.bin" | cut -d' ' -f1)
    for ((i = 0; i < 100; i++)); do
        head -c $((2 << 20)) /dev/urandom > "$PXE_WORK/root/c/$i.bin"
        PX[c_sha.$i]=$(sha256sum < "$PXE_WORK/root/c/$i.bin" | cut -d' ' -f1)
    done
    chmod -R a+rX "$PXE_WORK/root"

    ip netns add "$PXE_NS"
    ip -n "$PXE_NS" link set lo up
    local ex=$SRC/target/release/examples
    # TFTP: dnsmasq on 69 (it has no port option), slipway on 6969; a 0.5 ms relay before each.
    pxe_start dnsmasq ip netns exec "$PXE_NS" dnsmasq --port=0 --enable-tftp --tftp-root="$PXE_WORK/root" \
        --conf-file=/dev/null --keep-in-foreground --user=root --group=root \
        --listen-address=127.0.0.1 --bind-interfaces --pid-file= --log-facility=-
    pxe_start tftp ip netns exec "$PXE_NS" "$ex/pxe_tftp_serve" "$PXE_WORK/root" 127.0.0.1:6969
    pxe_start relay-dnsmasq ip netns exec "$PXE_NS" "$ex/udp_delay_relay" 127.0.0.1:7069 127.0.0.1:69 "$PXE_DELAY_US"
    pxe_start relay-slipway ip netns exec "$PXE_NS" "$ex/udp_delay_relay" 127.0.0.1:7070 127.0.0.1:6969 "$PXE_DELAY_US"
    for p in dnsmasq:'TFTP root is' tftp:'pxe_tftp_serve: tftp://' relay-dnsmasq:'udp_delay_relay:' relay-slipway:'udp_delay_relay:'; do
        pxe_ready "${p%%:*}" grep -q "${p#*:}" "$LOGS/pxe-${p%%:*}.log" || { PX[status]="not measured: ${p%%:*} did not start"; return 0; }
    done
    out=$PXE_WORK/out/big.bin

    # 1. Lock-step on loopback, 5 runs each, alternating.
    runs_d=() runs_s=()
    for i in 1 2 3 4 5; do
        tftp_get "tftp_lo_dnsmasq.$i" 127.0.0.1 69 "$out" && runs_d+=("${T[tftp_lo_dnsmasq.$i]}")
        tftp_get "tftp_lo_slipway.$i" 127.0.0.1 6969 "$out" && runs_s+=("${T[tftp_lo_slipway.$i]}")
    done
    [ ${#runs_d[@]} = 0 ] || { T[tftp_lo_dnsmasq]=$(median "${runs_d[@]}"); PX[tftp_lo_dnsmasq.runs]="${runs_d[*]}"; }
    [ ${#runs_s[@]} = 0 ] || { T[tftp_lo_slipway]=$(median "${runs_s[@]}"); PX[tftp_lo_slipway.runs]="${runs_s[*]}"; }
    # Through the relay: one run each (some 45,700 round trips of at least 1 ms).
    tftp_get tftp_relay_dnsmasq 127.0.0.1 7069 "$out" || true
    tftp_get tftp_relay_slipway 127.0.0.1 7070 "$out" || true
    # Windowsize 16 (atftp 0.8 asks for it; dnsmasq does not support it): 3 runs each.
    for k in lo:6969 relay:7070; do
        runs_s=()
        for i in 1 2 3; do
            tftp_get "tftp_${k%%:*}_window.$i" 127.0.0.1 "${k#*:}" "$out" --option "windowsize 16" &&
                runs_s+=("${T[tftp_${k%%:*}_window.$i]}")
        done
        [ ${#runs_s[@]} = 0 ] || { T[tftp_${k%%:*}_window]=$(median "${runs_s[@]}"); PX[tftp_${k%%:*}_window.runs]="${runs_s[*]}"; }
    done
    # That the server granted the window: the OACK, in atftp's trace of a small transfer.
    if in_ns atftp --trace --option "blksize $PXE_BLKSIZE" --option "windowsize 16" -g -r c/0.bin \
        -l "$PXE_WORK/out/trace.bin" 127.0.0.1 6969 2>&1 | grep -c 'received OACK <.*windowsize: 16' > /dev/null; then
        PX[window_seen]=yes
    fi

    # 2. 100 TFTP transfers at once, then 200 HTTP downloads at once.
    dir=$PXE_WORK/out/tftp-many
    mkdir -p "$dir"
    pxe_timed tftp_many many_tftp 100 "$dir" || true
    PX[tftp_many_ok]=$(many_ok 100 "$dir" 100)
    pxe_start http ip netns exec "$PXE_NS" "$ex/pxe_http_serve" "$PXE_WORK/root" 127.0.0.1:8080
    cat > "$PXE_WORK/nginx/nginx.conf" << EOF
worker_processes 1;
user root root;
pid $PXE_WORK/nginx/nginx.pid;
error_log $PXE_WORK/nginx/error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $PXE_WORK/nginx/body;
    proxy_temp_path $PXE_WORK/nginx/proxy;
    fastcgi_temp_path $PXE_WORK/nginx/fastcgi;
    uwsgi_temp_path $PXE_WORK/nginx/uwsgi;
    scgi_temp_path $PXE_WORK/nginx/scgi;
    server { listen 127.0.0.1:8081; root $PXE_WORK/root; }
}
EOF
    pxe_start nginx ip netns exec "$PXE_NS" nginx -p "$PXE_WORK/nginx" -c "$PXE_WORK/nginx/nginx.conf" -e "$PXE_WORK/nginx/error.log"
    pxe_ready http in_ns curl -sf -o /dev/null http://127.0.0.1:8080/c/0.bin &&
        pxe_ready nginx in_ns curl -sf -o /dev/null http://127.0.0.1:8081/c/0.bin ||
        { PX[status]="not measured: the HTTP servers did not start"; return 0; }
    dir=$PXE_WORK/out/http-many
    mkdir -p "$dir"
    pxe_timed http_many many_http 200 "$dir" 8080 || true
    PX[http_many_ok]=$(many_ok 200 "$dir" 100)
    rm -rf "$PXE_WORK/out/tftp-many" "$PXE_WORK/out/http-many"

    # 4. HTTP throughput: one checked download from each, then 7 runs each, alternating.
    for k in slipway:8080 nginx:8081; do
        rm -f "$out"
        in_ns curl -sS --fail -o "$out" "http://127.0.0.1:${k#*:}/big.bin" && pxe_sum_ok "$out" "${PX[big_sha]}" ||
            CHECK_FAILURES+=("8: HTTP from ${k%%:*}: big.bin failed or its SHA-256 is wrong")
    done
    runs_d=() runs_s=()
    for i in 1 2 3 4 5 6 7; do
        http_get "http_nginx.$i" 8081 && runs_d+=("${PX[http_nginx.$i.t]}")
        http_get "http_slipway.$i" 8080 && runs_s+=("${PX[http_slipway.$i.t]}")
    done
    [ ${#runs_d[@]} = 0 ] || { PX[http_nginx]=$(median "${runs_d[@]}"); PX[http_nginx.runs]="${runs_d[*]}"; }
    [ ${#runs_s[@]} = 0 ] || { PX[http_slipway]=$(median "${runs_s[@]}"); PX[http_slipway.runs]="${runs_s[*]}"; }

    # 3. 1000 PXE clients: a veth pair between two namespaces, the server bound to its end.
    ip netns add "$PXE_NS_SRV"
    ip netns add "$PXE_NS_CLI"
    ip link add sbpv0 netns "$PXE_NS_SRV" type veth peer name sbpv1 netns "$PXE_NS_CLI"
    ip -n "$PXE_NS_SRV" addr add 10.231.0.1/24 dev sbpv0
    ip -n "$PXE_NS_CLI" addr add 10.231.0.2/24 dev sbpv1
    for p in "$PXE_NS_SRV":sbpv0 "$PXE_NS_CLI":sbpv1; do
        ip -n "${p%%:*}" link set lo up
        ip -n "${p%%:*}" link set "${p#*:}" up
    done
    pxe_start dhcp ip netns exec "$PXE_NS_SRV" "$ex/pxe_dhcp_serve" sbpv0 10.231.0.1
    pxe_ready dhcp grep -q 'dhcp: proxy mode' "$LOGS/pxe-dhcp.log" || { PX[status]="not measured: the DHCP server did not start"; return 0; }
    for k in paced:1000 burst:0; do
        before=$(udp_rcvbuf_errors "$PXE_NS_SRV")
        pxe_timed "dhcp_${k%%:*}" ip netns exec "$PXE_NS_CLI" "$ex/pxe_dhcp_load" sbpv1 10.231.0.1 1000 "${k#*:}" || true
        PX[dhcp_${k%%:*}]=$(tail -n 1 "$LOGS/dhcp_${k%%:*}.out")
        PX[dhcp_${k%%:*}.drops]=$(($(udp_rcvbuf_errors "$PXE_NS_SRV") - before))
    done

    pxe_cleanup
    trap - EXIT INT TERM

    # 5. The parsers' property tests with many more cases (the build is not timed).
    say "pxe: building the property tests (cargo test --release --no-run)"
    if (cd "$SRC" && cargo test --release --no-run --lib --test pxe_dhcp --test kickstart_proptest) > "$LOGS/proptest-build.log" 2>&1; then
        pxe_timed proptest_tftp env PROPTEST_CASES="$PXE_CASES" sh -c "cd '$SRC' && exec cargo test --release --lib -- pxe::tftp::tests::parse_never_panics pxe::tftp::tests::encode_then_parse_round_trips" || true
        pxe_timed proptest_dhcp env PROPTEST_CASES="$PXE_CASES" sh -c "cd '$SRC' && exec cargo test --release --test pxe_dhcp -- never_panic" || true
        pxe_timed proptest_kickstart env PROPTEST_CASES="$PXE_CASES" sh -c "cd '$SRC' && exec cargo test --release --test kickstart_proptest" || true
    else
        PX[proptest_build]="failed (see $LOGS/proptest-build.log)"
    fi
    PX[loadavg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

    # 6. The PXE lab (tests/pxe_slow.rs, three VMs under TCG): each install's phases, and
    #    boot-to-SSH of the prebuilt host image booted by the same test afterwards.
    if [ "${SLIPWAY_BENCH_SKIP_PXE_VM:-0}" != 1 ]; then
        rm -f "$PXE_VM_JSONL"
        pxe_timed pxe_vm env SLIPWAY_BENCH_OUT="$PXE_VM_JSONL" SLIPWAY_HOST_EXE="$SLIPWAY" \
            sh -c "cd '$SRC' && exec cargo test --test pxe_slow -- --ignored --skip pxe_install_alone --nocapture" || true
    fi
    PX[status]=measured
}

# "N passed" of a cargo test run's summary, or "failed".
test_passed() {
    if grep -q '^test result: ok' "$LOGS/$1.out" 2> /dev/null; then
        sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$LOGS/$1.out" | head -n 1
    else
        echo failed
    fi
}
# A field of the DHCP load generator's JSON line: dhcp_field RUN '.answer_ms.p99'.
dhcp_field() { jq -r "$2 // \"?\"" <<< "${PX[$1]:-\{\}}" 2> /dev/null || echo '?'; }
# Seconds without the fraction (VM phases are minutes long; the poll and the clock are 1 s).
secs() { [ -n "$1" ] && printf '%.0f' "$1" || printf '?'; }
# The value of a pxe_* measurement of the VM test's JSON lines.
pxe_vm_value() {
    [ -f "$PXE_VM_JSONL" ] || return 0
    grep -E "\"name\": ?\"$1\"" "$PXE_VM_JSONL" | tail -n 1 | sed -n 's/.*"value": *\([0-9.eE+-]*\).*/\1/p'
}

# The section of BENCHMARKS.md, between markers so that `bench/run.sh pxe` can replace it.
pxe_section() {
    local b=${PX[big_bytes]:-67108864} r lo_d lo_s re_d re_s w_lo w_re rw h_s h_n rh k shared
    echo "<!-- pxe:begin -->"
    echo "## 8. PXE serving"
    echo
    if [ "${PX[status]:-not run}" != measured ]; then
        echo "**Not measured**: ${PX[status]:-not run}."
        echo "<!-- pxe:end -->"
        return 0
    fi
    cell_t() { if [ -n "${T[$1]:-}" ]; then printf '%s MiB/s (%.2f s)' "$(mibps "$b" "${T[$1]}")" "${T[$1]}"; else printf 'failed'; fi; }
    rat_t() { if [ -n "${T[$1]:-}" ] && [ -n "${T[$2]:-}" ]; then ratio "${T[$2]}" "${T[$1]}"; fi; }
    shared=
    if awk -v a="${PX[loadavg_start]%% *}" -v b="${PX[loadavg_end]%% *}" 'BEGIN { exit !(a > 1 || b > 1) }'; then
        shared=" **The machine was shared** (load average above 1: another engineer's VM tests under TCG were running), so every number here is lower than on an idle machine; slipway and its baseline ran alternately, so their ratios are fairer than their absolute values."
    fi
    cat << EOF
Measured by \`bench/run.sh pxe\` on ${PX[date]} (slipway ${PX[revision]}), ${V[nproc]} cores, load average
${PX[loadavg_start]} at the start and ${PX[loadavg_end]} at the end.${shared} Tools: ${PX[tools]}.
Servers: \`examples/pxe_tftp_serve.rs\` (slipway's TFTP server, tokio's multi-threaded runtime
as \`pxe serve\`), \`examples/pxe_http_serve.rs\` (slipway's HTTP server, one tokio thread),
\`examples/pxe_dhcp_serve.rs\` (proxyDHCP and port 4011); baselines dnsmasq (TFTP) and nginx
(\`worker_processes 1\`, \`sendfile on\`, no access log), each started by the script with its
own configuration, in a network namespace of its own with only loopback, and stopped after.
Every download is checked against the file's SHA-256. Throughput is the file size over the
client's wall time (TFTP: the whole \`atftp\` command; HTTP: curl's \`time_total\`).

| measurement | slipway | baseline | ratio | target | result |
| --- | --- | --- | --- | --- | --- |
EOF
    r=$(rat_t tftp_lo_slipway tftp_lo_dnsmasq)
    echo "| TFTP lock-step, 64 MiB, blksize $PXE_BLKSIZE, loopback (atftp, median of 5) | $(cell_t tftp_lo_slipway) | dnsmasq $(cell_t tftp_lo_dnsmasq) | ${r:+${r}x} | >= 1x | $([ -n "$r" ] && verdict "$r" ">=" 1 || echo FAIL) |"
    r=$(rat_t tftp_relay_slipway tftp_relay_dnsmasq)
    echo "| TFTP lock-step, 64 MiB, through the ${PXE_DELAY_US} us relay (1 run) | $(cell_t tftp_relay_slipway) | dnsmasq $(cell_t tftp_relay_dnsmasq) | ${r:+${r}x} | >= 1x | $([ -n "$r" ] && verdict "$r" ">=" 1 || echo FAIL) |"
    r=$(rat_t tftp_relay_window tftp_relay_slipway)
    echo "| TFTP windowsize 16, 64 MiB, through the relay (median of 3) | $(cell_t tftp_relay_window) | slipway lock-step through the relay (above) | ${r:+${r}x} | >= 4x | $([ -n "$r" ] && verdict "$r" ">=" 4 || echo FAIL) |"
    r=$(rat_t tftp_lo_window tftp_lo_slipway)
    echo "| TFTP windowsize 16, 64 MiB, loopback (median of 3) | $(cell_t tftp_lo_window) | slipway lock-step on loopback | ${r:+${r}x} | | info |"
    k=FAIL; [ "${PX[tftp_many_ok]:-0}" != 100 ] || k=PASS
    echo "| 100 TFTP transfers at once (100 different 2 MiB files, lock-step) | ${PX[tftp_many_ok]:-0} of 100 complete and checksum-correct, $(printf '%.1f' "${T[tftp_many]:-0}") s in all | | | all 100 | $k |"
    k=FAIL; [ "${PX[http_many_ok]:-0}" != 200 ] || k=PASS
    echo "| 200 HTTP downloads at once (the same files, each twice) | ${PX[http_many_ok]:-0} of 200 complete and checksum-correct, $(printf '%.1f' "${T[http_many]:-0}") s in all | | | all 200 | $k |"
    h_s=${PX[http_slipway]:-} h_n=${PX[http_nginx]:-} rh=
    [ -z "$h_s" ] || [ -z "$h_n" ] || rh=$(ratio "$h_n" "$h_s")
    echo "| HTTP GET, 64 MiB, loopback (curl, median of 7) | ${h_s:+$(mibps "$b" "$h_s") MiB/s ($h_s s)} | nginx ${h_n:+$(mibps "$b" "$h_n") MiB/s ($h_n s)} | ${rh:+${rh}x} | >= 0.8x | $([ -n "$rh" ] && verdict "$rh" ">=" 0.8 || echo FAIL) |"
    for k in paced burst; do
        local lost bad acks p99 what tgt res
        lost=$(dhcp_field "dhcp_$k" .lost) bad=$(dhcp_field "dhcp_$k" .bad) acks=$(dhcp_field "dhcp_$k" .acks)
        p99=$(dhcp_field "dhcp_$k" .answer_ms.p99)
        if [ "$k" = paced ]; then
            what="1000 PXE clients, one every 1 ms: DISCOVER to 67, REQUEST to 4011"
            tgt="none lost"
            res=FAIL; [ "$lost" = 0 ] && [ "$bad" = 0 ] && [ "$acks" = 1000 ] && res=PASS
        else
            what="1000 PXE clients all at once (no pause between DISCOVERs)"
            tgt= res=info
        fi
        echo "| $what | $acks of 1000 booted (OFFER and ACK), lost $lost, wrong $bad; answer time p50 $(dhcp_field "dhcp_$k" .answer_ms.p50) ms, **p99 $p99 ms**, max $(dhcp_field "dhcp_$k" .answer_ms.max) ms (OFFER p99 $(dhcp_field "dhcp_$k" .offer_ms.p99), ACK p99 $(dhcp_field "dhcp_$k" .ack_ms.p99)); server's UDP receive-buffer drops: ${PX[dhcp_$k.drops]:-?} | | | $tgt | $res |"
    done
    local pt pd pk
    pt=$(test_passed proptest_tftp) pd=$(test_passed proptest_dhcp) pk=$(test_passed proptest_kickstart)
    k=FAIL; [ "$pt" = 3 ] && [ "$pd" = 3 ] && [ "$pk" = 3 ] && k=PASS
    echo "| property tests of the TFTP, DHCP and kickstart parsers, PROPTEST_CASES=$PXE_CASES | TFTP: ${pt} of 3 properties passed, DHCP: ${pd} of 3, kickstart: ${pk} of 3${PX[proptest_build]:+ (build ${PX[proptest_build]})}; $(printf '%.0f' "${T[proptest_tftp]:-0}") s, $(printf '%.0f' "${T[proptest_dhcp]:-0}") s and $(printf '%.0f' "${T[proptest_kickstart]:-0}") s | | | all pass | $k |"
    # The PXE lab's installs, from the VM test's JSON lines.
    local inst img m part parts
    inst=$(pxe_vm_value pxe_install_to_ssh_s) img=$(pxe_vm_value pxe_image_boot_to_ssh_s)
    if [ -n "$inst" ]; then
        for m in uefi bios; do
            parts=
            for part in firmware_to_installer disk_and_pull deploy bootloader_and_post reboot_to_ssh; do
                parts+="${parts:+, }${part//_/ } $(secs "$(pxe_vm_value "pxe_${m}_${part}_s")") s"
            done
            echo "| PXE install to SSH, \`$m\` machine (power-on to SSH; three VMs, one vCPU each, TCG) | $(secs "$(pxe_vm_value "pxe_${m}_install_to_ssh_s")") s: $parts | | | | info |"
        done
        local pull base
        pull=$(pxe_vm_value pxe_bios_disk_and_pull_s) base=$(pxe_vm_value pxe_ostree_pull_s)
        if [ -n "$base" ]; then
            k=FAIL; [ "$(awk -v a="$pull" -v b="$base" 'BEGIN { print (a <= 1.2 * b) }')" = 1 ] && k=PASS
            echo "| the \`bios\` installer's partitioning and pull against \`ostree pull\` of the same commit from the same server (on the installed machine, the other VMs idle; the installer shared two cores with two more) | $(secs "$pull") s | $(secs "$base") s | $(ratio "$pull" "$base")x | <= 1.2x | $k |"
        fi
        echo "| slowest PXE install to SSH against boot to SSH of the prebuilt host image (same test, after the lab) | $(secs "$inst") s | $([ -n "$img" ] && echo "$(secs "$img") s" || echo "not recorded") | ${img:+$(ratio "$inst" "$img")x} | | info |"
    else
        echo "| PXE install to SSH (tests/pxe_slow.rs) | not measured in this run${SLIPWAY_BENCH_SKIP_PXE_VM:+ (SLIPWAY_BENCH_SKIP_PXE_VM)} | | | | info |"
    fi
    echo
    lo_d=${T[tftp_lo_dnsmasq]:-} lo_s=${T[tftp_lo_slipway]:-} re_d=${T[tftp_relay_dnsmasq]:-} re_s=${T[tftp_relay_slipway]:-}
    w_lo=${T[tftp_lo_window]:-} w_re=${T[tftp_relay_window]:-}
    cat << EOF
Runs (seconds): loopback lock-step dnsmasq ${PX[tftp_lo_dnsmasq.runs]:-none}, slipway ${PX[tftp_lo_slipway.runs]:-none};
windowsize 16 loopback ${PX[tftp_lo_window.runs]:-none}, through the relay ${PX[tftp_relay_window.runs]:-none};
HTTP (curl \`time_total\`) nginx ${PX[http_nginx.runs]:-none}, slipway ${PX[http_slipway.runs]:-none}.

The relay (\`examples/udp_delay_relay.rs\`; this kernel has no netem) holds every datagram
${PXE_DELAY_US} us in each direction and forwards per flow, so TFTP's per-transfer ports work through it:
each client gets its own upstream socket, each server transfer port its own client-facing
socket. Lock-step TFTP through it costs $( [ -n "$re_s" ] && awk -v t="$re_s" -v b="$b" -v k="$PXE_BLKSIZE" 'BEGIN { printf "%.2f", 1000 * t / (int(b / k) + 1) }' || echo '?') ms per block with slipway
and $( [ -n "$re_d" ] && awk -v t="$re_d" -v b="$b" -v k="$PXE_BLKSIZE" 'BEGIN { printf "%.2f", 1000 * t / (int(b / k) + 1) }' || echo '?') ms with dnsmasq (the 1 ms round trip plus the relay's thread wake-ups).
The windowed client is Debian's atftp 0.8 (\`--option "windowsize 16"\`, granted in the OACK$([ "${PX[window_seen]:-}" = yes ] || echo '; not confirmed in its output')), the same client as the lock-step runs; dnsmasq does not implement windowsize, so the windowed rows compare
slipway with itself.

DHCP: the server runs in one namespace bound to its veth end (SO_BINDTODEVICE), the
generator (\`examples/pxe_dhcp_load.rs\`, dhcproto) in another: client i has its own MAC,
GUID and (alternately) BIOS or x86-64 UEFI architecture, broadcasts a DISCOVER to port 67,
takes the proxy's OFFER (broadcast to 68), then sends a REQUEST for boot server type 0x8000
to 10.231.0.1:4011 and takes the ACK. No retransmissions (firmware would retry after 4 s):
an answer not there within 2 s is lost. Answer time: request sent to answer received, in the
generator. "Receive-buffer drops": the server namespace's \`Udp: RcvbufErrors\` during the run.

Property tests: \`pxe::tftp::tests\` (parse never panics on any bytes and on near-requests,
encode then parse round-trips) and \`tests/pxe_dhcp.rs\` (any bytes, DHCP-like bytes and
PXE-like requests never panic and every reply decodes), each with PROPTEST_CASES=$PXE_CASES
(256 in \`cargo test\`).

| measurement | wall | own CPU | rest of the machine |
| --- | --- | --- | --- |
EOF
    for k in tftp_lo_dnsmasq.1 tftp_lo_slipway.1 tftp_relay_dnsmasq tftp_relay_slipway tftp_relay_window.1 tftp_many http_many http_nginx.1 http_slipway.1 dhcp_paced dhcp_burst proptest_tftp proptest_dhcp; do
        [ -z "${T[$k]:-}" ] || load_row "$k"
    done
    cat << EOF

Commands (from \`$SRC\`, as root; namespaces and servers removed at the end; logs in \`$LOGS\`):

\`\`\`sh
$(printf '%s' "$PXE_COMMANDS" | awk '!seen[$0]++')
\`\`\`
EOF
    echo "<!-- pxe:end -->"
}

# ----------------------------------------------------------------------------------------------
# 1r. Recompose with the package cache (`bench/run.sh recompose`, after the cold compose of 1
#     and debos's run of 1p): one leaf package added, then a package with maintainer scripts
#     and a systemd unit, into the repository of 1; and the commit stage on the cold commit's
#     own tree (checked out), `ostree commit` against `slipway compose commit`.
# ----------------------------------------------------------------------------------------------

# measure_recompose_adds REPO: into REPO (1's repository, or in a full run a hard-linked copy
# of it, so the later steps still find the cold commit and the summary that names it), the
# default host plus `hello`, then plus `cron` too; sets T[compose_hello], T[compose_cron] and
# their package-stage paths. Its treefiles go into $BENCH/recompose (made by the caller).
measure_recompose_adds() {
    local repo=$1 dir=$BENCH/recompose k
    printf '{"include": "%s", "packages": ["hello"]}\n' "$TREEFILE" > "$dir/hello.json"
    printf '{"include": "%s", "packages": ["hello", "cron"]}\n' "$TREEFILE" > "$dir/cron.json"
    measure compose_hello "$SLIPWAY" compose tree --repo "$repo" --cachedir "$CACHE" \
        --write-composejson-to "$RESULTS/compose-hello.json" "$dir/hello.json"
    measure compose_cron "$SLIPWAY" compose tree --repo "$repo" --cachedir "$CACHE" \
        --write-composejson-to "$RESULTS/compose-cron.json" "$dir/cron.json"
    for k in hello cron; do
        V[path_$k]=$(sed -n 's/^    "path": "\(.*\)",\{0,1\}$/\1/p' "$RESULTS/compose-$k.json" | head -n1)
    done
    [ "${V[path_hello]}" = added ] ||
        CHECK_FAILURES+=("1r: adding hello took the package stage's '${V[path_hello]}' path, not 'added'")
}

measure_recompose() {
    local tree=$BENCH/recompose/tree
    rm -rf "$BENCH/recompose"
    mkdir -p "$BENCH/recompose"
    measure_recompose_adds "$REPO"
    # The commit stage on one tree: the cold commit checked out (read once by the checkout).
    ostree checkout --repo="$REPO" "${V[commit]}" "$tree" > /dev/null
    measure_commit_stage "$tree" "$BENCH/recompose"
    V[commit_tree_text]="the cold commit's tree (checked out)"
    rm -rf "$tree"
}

# measure_commit_stage TREE DIR: TREE committed by `ostree commit` and by `slipway compose
# commit`, each into a fresh archive repository with its own defaults (DIR/commit-ostree made
# by `ostree init`: zlib level 6; DIR/commit-slipway made by slipway: level 4; the sizes show
# what that costs). Sets their sizes, V[c_ostree], V[c_slipway] and V[commit_same].
measure_commit_stage() {
    local tree=$1 dir=$2
    rm -rf "$dir/commit-ostree" "$dir/commit-slipway"
    ostree init --repo="$dir/commit-ostree" --mode=archive
    measure commit_ostree ostree commit --repo="$dir/commit-ostree" --branch=bench/x --tree=dir="$tree"
    measure commit_slipway "$SLIPWAY" compose commit --repo "$dir/commit-slipway" --ref bench/x "$tree"
    V[commit_ostree_bytes]=$(du -sb "$dir/commit-ostree" | cut -f1)
    V[commit_slipway_bytes]=$(du -sb "$dir/commit-slipway" | cut -f1)
    V[c_ostree]=$(ostree rev-parse --repo="$dir/commit-ostree" bench/x)
    V[c_slipway]=$(ostree rev-parse --repo="$dir/commit-slipway" bench/x)
    if [ "$(ostree ls --repo="$dir/commit-ostree" -d -C "${V[c_ostree]}" / | awk '{ print $5 }')" = \
        "$(ostree ls --repo="$dir/commit-slipway" -d -C "${V[c_slipway]}" / | awk '{ print $5 }')" ]; then
        V[commit_same]="the same root tree (\`ostree ls -d -C\`)"
    else
        V[commit_same]="DIFFERENT root trees"
        CHECK_FAILURES+=("commit stage: ostree commit and slipway compose commit made different trees")
    fi
}

recompose_phases() { json_phases "$RESULTS/compose-$1.json" | awk '{ printf "%s%s %.1f s", sep, $1, $2; sep = ", " }'; }

recompose_section() {
    local r_cold r_hello r_cron r_commit k
    local cold_row
    if [ -n "${T[compose_debos]:-}" ]; then
        r_cold=$(ratio "${T[compose_cold]}" "${T[compose_debos]}")
        cold_row="| cold compose against debos | $(printf '%.1f' "${T[compose_cold]}") s | $(printf '%.1f' "${T[compose_debos]}") s (debos) | ${r_cold}x | <= 0.6x | $(verdict "$r_cold" "<=" 0.6) |"
    else
        cold_row="| cold compose against debos | $(printf '%.1f' "${T[compose_cold]}") s | not measured (debos ${V[debos]}) | | <= 0.6x | not measured |"
    fi
    r_hello=$(ratio "${T[compose_hello]}" "${T[compose_cold]}")
    r_cron=$(ratio "${T[compose_cron]}" "${T[compose_cold]}")
    r_commit=$(ratio "${T[commit_slipway]}" "${T[commit_ostree]}")
    local RECOMPOSE_ARG=" recompose"
    [ "$MODE" != all ] || RECOMPOSE_ARG=""
    echo "<!-- recompose:begin -->"
    cat << EOF
## 1r. Recompose with the package cache

Measured by \`bench/run.sh${RECOMPOSE_ARG}\` on ${V[date]} (slipway ${V[revision]}), one run: the cold
compose of \`atomic-host.json\` (fresh repository, warm .deb cache, **empty package cache**), debos
on the same packages (section 1p's recipe), then into the cold compose's repository the default
host plus \`hello\` (a leaf package: files only), then plus \`cron\` too (maintainer scripts, a
systemd unit, a group), then the commit stage on ${V[commit_tree_text]}.

| measurement | slipway | baseline | ratio | target | result |
| --- | --- | --- | --- | --- | --- |
${cold_row}
| add \`hello\` to the default host | $(printf '%.1f' "${T[compose_hello]}") s (package stage: ${V[path_hello]}) | $(printf '%.1f' "${T[compose_cold]}") s (the cold compose) | ${r_hello}x | <= 0.35x | $(verdict "$r_hello" "<=" 0.35) |
| then add \`cron\` (scripts, a unit) | $(printf '%.1f' "${T[compose_cron]}") s (package stage: ${V[path_cron]}) | $(printf '%.1f' "${T[compose_cold]}") s (the cold compose) | ${r_cron}x | | info |
| commit stage, one tree into a fresh archive repository | $(printf '%.1f' "${T[commit_slipway]}") s (\`slipway compose commit\`) | $(printf '%.1f' "${T[commit_ostree]}") s (\`ostree commit\`) | ${r_commit}x | <= 0.45x | $(verdict "$r_commit" "<=" 0.45) |

Phases (composejson): cold: $(recompose_phases cold); \`hello\`: $(recompose_phases hello); \`cron\`: $(recompose_phases cron).

The package stage (\`build\`): the cold compose unpacks every .deb into the package cache
(\`\$CACHE/packages\`), copies them into the root, runs every preinst and \`dpkg --configure -a\`,
and keeps the configured root in the cache. Adding \`hello\` starts from that root (hard links)
and adds hello's files (path \`${V[path_hello]}\`); adding \`cron\`, which has maintainer scripts,
assembles the root from the cache and configures every package again (path \`${V[path_cron]}\`).
The commit stage: ${V[commit_same]}; repositories ${V[commit_slipway_bytes]} B (slipway) and
${V[commit_ostree_bytes]} B (ostree).

| run | wall | own CPU | rest of the machine |
| --- | --- | --- | --- |
EOF
    for k in compose_cold compose_debos compose_hello compose_cron commit_ostree commit_slipway; do
        [ -z "${T[$k]:-}" ] || load_row "$k"
    done
    # A full run lists every command once, at the end of the report.
    [ "$MODE" = all ] || cat << EOF

Commands (as root; \`\$SRC\` is the checkout, \`\$BENCH\` the script's work directory):

\`\`\`sh
$(printf '%s' "$COMMANDS" | sed "s#$BENCH#\$BENCH#g; s#$SRC#\$SRC#g")
\`\`\`
EOF
    echo "<!-- recompose:end -->"
}

# ----------------------------------------------------------------------------------------------
# Set-up: binary, machine, work directory, warm cache
# ----------------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, ostree, image building, network namespaces)"
needed=(mmdebstrap ostree bwrap qemu-img cargo awk)
[ "$MODE" != pxe ] || needed=(cargo awk ip atftp dnsmasq nginx curl jq)
for p in "${needed[@]}"; do
    command -v "$p" > /dev/null || die "$p is missing (make bench installs what is needed)"
done
if [ -n "${SLIPWAY_BENCH_SOURCES:-}" ]; then
    SOURCES=$SLIPWAY_BENCH_SOURCES
elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
    SOURCES=/etc/apt/sources.list.d/debian.sources
else
    SOURCES=/etc/apt/sources.list
fi
[ -f "$SOURCES" ] || die "no apt sources file for the baseline (set SLIPWAY_BENCH_SOURCES)"

# 1p's peer: debos (skipped, and said so in the report, when not wanted or not installed).
DEBOS_RECIPE=$SRC/bench/debos/atomic-host.yaml
DEBOS_WORK=$BENCH/debos
DEBOS_REF=debos/bookworm/x86_64/atomic-host
DEBOS_SUITE=bookworm
V[debos]=run
if [ "$MODE" = pxe ]; then
    V[debos]="skipped (pxe mode)"
elif [ "${SLIPWAY_BENCH_SKIP_DEBOS:-0}" = 1 ]; then
    V[debos]="skipped (SLIPWAY_BENCH_SKIP_DEBOS=1)"
elif ! command -v debos > /dev/null; then
    V[debos]="skipped (debos is not installed: apt-get install --no-install-recommends debos)"
fi
[ "$MODE" != compose-peer ] || [ "${V[debos]}" = run ] || die "compose-peer: debos ${V[debos]}"
[ "$MODE" != recompose ] || [ "${V[debos]}" = run ] || die "recompose: debos ${V[debos]}"
MIRROR='' SECURITY='' UPDATES=no
if [ "${V[debos]}" = run ]; then
    host_mirrors "$DEBOS_SUITE"
    [ -n "$MIRROR" ] || die "no apt source for $DEBOS_SUITE in $SOURCES or the other sources files (debos's mirror)"
    say "debos's mirrors (from the host's apt sources): $MIRROR ($DEBOS_SUITE, -updates: $UPDATES), security: ${SECURITY:-none}"
fi

mkdir -p "$BENCH" "$CACHE"
say "building slipway (cargo build --release)"
(cd "$SRC" && cargo build --release) > /dev/null 2> "$BENCH/cargo-build.log" ||
    { tail -n 30 "$BENCH/cargo-build.log" >&2; die "cargo build --release failed"; }
if [ "$MODE" = pxe ] || { [ "$MODE" = all ] && [ "${SLIPWAY_BENCH_SKIP_PXE:-0}" != 1 ]; }; then
    say "building the PXE benchmark's programs (cargo build --release --example ...)"
    (cd "$SRC" && cargo build --release $(printf -- '--example %s ' "${PXE_EXAMPLES[@]}")) > /dev/null 2>> "$BENCH/cargo-build.log" ||
        { tail -n 30 "$BENCH/cargo-build.log" >&2; die "cargo build --release --example failed"; }
fi

if [ "$MODE" = pxe ]; then
    measure_pxe
    pxe_section > "$RESULTS/pxe.md"
    replace_section pxe
    cat "$RESULTS/pxe.md"
    if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
        printf '%s\n' "${CHECK_FAILURES[@]}" >&2
        die "correctness checks failed (see $REPORT)"
    fi
    exit 0
fi

if [ "$MODE" = services ]; then
    measure_services
    services_section > "$RESULTS/services.md"
    replace_section services
    cat "$RESULTS/services.md"
    exit 0
fi

if [ "$MODE" = install ]; then
    measure_install
    install_section > "$RESULTS/install.md"
    replace_section install
    cat "$RESULTS/install.md"
    [ "${V[install]}" = ok ] || die "the PXE install test failed (see $LOGS/install.err)"
    exit 0
fi

if [ "$MODE" = host ]; then
    measure_host
    host_section > "$RESULTS/host.md"
    replace_section host
    cat "$RESULTS/host.md"
    [ "${V[host]}" = ok ] || die "the host test failed (see $LOGS/host.err)"
    exit 0
fi

rm -rf "$RESULTS" "$LOGS" "$BENCH/slipway-repo" "$BENCH/baseline" "$BENCH/commit-ostree" \
    "$BENCH/commit-slipway" "$BENCH/images" "$DEBOS_WORK"
mkdir -p "$RESULTS" "$LOGS" "$BENCH/images"

# Image work directories left in the cache (slipway removes its own, immutable OSTree
# deployment directories included; any found after the image runs are reported in 5).
image_workdirs() { find "$CACHE/work" -mindepth 1 -maxdepth 1 -type d -name 'image-*' 2>/dev/null || true; }

V[date]=$(date -u '+%Y-%m-%d %H:%M UTC')
V[nproc]=$(nproc)
V[kernel]=$(uname -r)
V[cpu]=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
V[mem]=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
V[os]="Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
V[revision]=$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)
V[ostree]=$(ostree --version | awk -F"'" '/Version/ { print $2; exit }')
V[mmdebstrap]=$(mmdebstrap --version | awk '{ print $2 }')
V[debos_version]=$(dpkg-query -W -f='${Version}' debos 2>/dev/null || echo 'not installed')
V[loadavg]=$(cut -d' ' -f1-3 /proc/loadavg)

# Warm the shared cache with a throwaway compose (its own repository, kept between runs): after
# it, every .deb of the package set is in $CACHE/apt/archives and the apt lists are current.
say "warming the cache: throwaway compose into $BENCH/warm-repo"
warm() {
    "$SLIPWAY" compose tree --repo "$BENCH/warm-repo" --cachedir "$CACHE" \
        --write-composejson-to "$RESULTS/compose-warm.json" "$@" "$TREEFILE" \
        > "$LOGS/warm.out" 2> "$LOGS/warm.err" || { tail -n 30 "$LOGS/warm.err" >&2; die "warm-up compose failed"; }
}
warm_start=$(date +%s.%N)
warm
missing=0
while IFS='=' read -r name version; do
    ls "$CACHE/apt/archives/${name}_${version//:/%3a}_"*.deb > /dev/null 2>&1 || missing=$((missing + 1))
done < <(commit_packages "$BENCH/warm-repo" "$REF")
if [ "$missing" != 0 ]; then
    say "warm-up: $missing .debs of the package set not cached: composing again with --force-nocache"
    warm --force-nocache
fi
V[warm]=$(awk -v a="$warm_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
if [ "$(json_scalar "$RESULTS/compose-warm.json" changed)" = true ]; then
    V[warm_text]="composed a commit in ${V[warm]} s this time"
else
    V[warm_text]="a no-op this time (${V[warm]} s): its commit was current and every .deb of the set was cached"
fi
say "cache warm: $(deb_count) .debs, $(human "$(du -sb "$CACHE/apt/archives" | cut -f1)")"

# ----------------------------------------------------------------------------------------------
# 1p. The peer: debos, same packages, same cache (functions: run after 1 and the baseline, or
#     straight after 1 by `bench/run.sh compose-peer`)
# ----------------------------------------------------------------------------------------------

declare -A DP   # debos phases and download counts (run-debos.sh --times)
measure_debos_peer() {
    local cmd shown u line missing=() s=$RESULTS/slipway-packages.txt d=$RESULTS/debos-packages.txt
    if [ "${V[debos]}" != run ]; then
        say "1p: debos ${V[debos]}"
        return 0
    fi
    # The recipe carries the treefiles' lists (packages, units, add-files): they must agree.
    if command -v jq > /dev/null; then
        diff <(tf_array "$TREEFILE" packages | LC_ALL=C sort -u) \
            <(recipe_packages "$DEBOS_RECIPE" | grep -vx usrmerge | LC_ALL=C sort -u) \
            > "$RESULTS/debos-recipe-packages.diff" ||
            CHECK_FAILURES+=("debos recipe: its apt packages (usrmerge aside) differ from the treefiles': $RESULTS/debos-recipe-packages.diff")
        while IFS= read -r u; do
            grep -qF -- "$u" "$DEBOS_RECIPE" || missing+=("unit $u")
        done < <(tf_array "$TREEFILE" units)
        while IFS= read -r line; do
            grep -qF -- " ${line#* }" "$SRC/bench/debos/customize.sh" || missing+=("add-files ${line#* }")
        done < <(tf_array "$TREEFILE" add-files)
        [ ${#missing[@]} = 0 ] || CHECK_FAILURES+=("debos recipe: not in it: ${missing[*]}")
        V[debos_recipe_check]="its packages, units and add-files checked against the treefiles' by this script"
    else
        V[debos_recipe_check]="its lists not checked against the treefiles': jq is missing"
    fi

    cmd=("$SRC/bench/debos/run-debos.sh" --workdir "$DEBOS_WORK" --suite "$DEBOS_SUITE"
        --mirror "$MIRROR" --updates "$UPDATES")
    [ -z "$SECURITY" ] || cmd+=(--security "$SECURITY")
    cmd+=(--debs "$CACHE/apt/archives" --times "$RESULTS/debos-times.txt" --log "$LOGS/debos-run.log")
    # The report names the mirrors by variable (read from $SOURCES at run time), not by host.
    shown=$(quote "${cmd[@]}")
    [ -z "$SECURITY" ] || shown=${shown//"$SECURITY"/\$SECURITY}
    shown=${shown//"$MIRROR"/\$MIRROR}
    COMMANDS+="$shown"$'\n'
    run_timed compose_debos "${cmd[@]}"
    while read -r k v; do DP[$k]=$v; done < "$RESULTS/debos-times.txt"
    V[debos_commit]=$(ostree rev-parse --repo="$DEBOS_WORK/artifacts/repo" "$DEBOS_REF")
    V[debos_repo_bytes]=$(du -sb "$DEBOS_WORK/artifacts/repo" | cut -f1)
    V[debos_initramfs_bytes]=$(ostree ls --repo="$DEBOS_WORK/artifacts/repo" "$DEBOS_REF" \
        "/usr/lib/modules/${V[kver]}/initramfs.img" 2>/dev/null | awk '{ print $4 }') || true
    # apt's own counts: apt-setup.sh's dist-upgrade, then the apt action.
    V[debos_upgraded]=$(sed -n 's/^.* apt-setup\.sh | \([0-9]*\) upgraded, .*/\1/p' "$LOGS/debos-run.log" | tail -n 1)
    V[debos_installed]=$(sed -n 's/^.* apt | [0-9]* upgraded, \([0-9]*\) newly installed.*/\1/p' "$LOGS/debos-run.log" | tail -n 1)

    # The two commits' package sets (name=version), sorted by name for join.
    dpkg_packages "$DEBOS_WORK/artifacts/repo" "$DEBOS_REF" | LC_ALL=C sort -t= -k1,1 > "$d"
    commit_packages "$REPO" "$REF" | LC_ALL=C sort -t= -k1,1 > "$s"
    V[pkg_debos]=$(wc -l < "$d")
    V[pkg_same]=$(LC_ALL=C join -t= "$s" "$d" | awk -F= '$2 == $3' | wc -l)
    V[pkg_only_slipway]=$(LC_ALL=C join -t= -v1 "$s" "$d" | paste -sd' ')
    V[pkg_only_debos]=$(LC_ALL=C join -t= -v2 "$s" "$d" | paste -sd' ')
    V[pkg_versions]=$(LC_ALL=C join -t= "$s" "$d" | awk -F= '$2 != $3 { printf "%s%s %s (slipway) %s (debos)", sep, $1, $2, $3; sep = ", " }')
    [ -z "${V[pkg_versions]}" ] ||
        CHECK_FAILURES+=("1p: packages at other versions in debos's commit than in slipway's (did the mirror change between the runs?): ${V[pkg_versions]}")
    if command -v jq > /dev/null; then
        missing=()
        while IFS= read -r u; do
            grep -q "^$u=" "$d" || missing+=("$u")
        done < <(tf_array "$TREEFILE" packages)
        [ ${#missing[@]} = 0 ] || CHECK_FAILURES+=("1p: treefile packages not installed in debos's commit: ${missing[*]}")
    fi
    say "1p: slipway ${T[compose_cold]} s, debos ${T[compose_debos]} s: $(ratio "${T[compose_cold]}" "${T[compose_debos]}")x; packages: ${V[pkg_same]} the same, only slipway: ${V[pkg_only_slipway]:-none}, only debos: ${V[pkg_only_debos]:-none}"
}

# The report's 1p section (markdown), for BENCHMARKS.md and compose-peer.md.
peer_section() {
    if [ "${V[debos]}" != run ]; then
        echo "**Not measured**: debos ${V[debos]}."
        return 0
    fi
    local r k v pk=0 c=${T[compose_cold]}
    local -A P
    r=$(ratio "${T[compose_cold]}" "${T[compose_debos]}")
    while read -r k v; do P[$k]=$v; done < <(json_phases "$RESULTS/compose-cold.json")
    for k in seed debootstrap apt-setup apt-install; do
        pk=$(awk -v a="$pk" -v b="${DP[phase.$k]:-0}" 'BEGIN { print a + b }')
    done
    cl() { if [ -n "${1:-}" ]; then printf '%.1f s' "$1"; else printf -- '-'; fi; }
    cat <<EOF
The cold compose of 1 (the same run, not another) against debos ${V[debos_version]} building
\`bench/debos/atomic-host.yaml\` with \`bench/debos/run-debos.sh\`, as root with
\`--disable-fakemachine\` (debos's KVM backend hangs on this machine, its emulated one is far
slower), into a fresh archive repository: **$(cl "$c") against $(cl "${T[compose_debos]}"): ${r}x**
(target <= 0.5x: **$(verdict "$r" "<=" 0.5)**). debos's commit \`${V[debos_commit]}\` (\`$DEBOS_REF\`),
its repository $(human "${V[debos_repo_bytes]}") (slipway's: $(human "${V[repo_bytes]:-$(du -sb "$REPO" | cut -f1)}")).

The recipe installs the treefiles' packages (${V[debos_recipe_check]}) from the host's apt
sources: debootstrap minbase from \`$DEBOS_SUITE\` of the host's mirror, then \`apt-setup.sh\`
adds $DEBOS_SUITE-updates and -security as slipway resolves them and upgrades
${V[debos_upgraded]:-?} packages, then the apt action installs ${V[debos_installed]:-?}. Like slipway:
no recommends, initramfs-tools forbidden, dracut diverted while packages install (no throwaway
initramfs), one dracut run with the ostree module and zstd, the treefiles' add-files,
postprocess, units and default target, the same OSTree layout conversion (in shell), and
\`ostree summary -u\`.

| phase | slipway | debos |
| --- | --- | --- |
| resolve (apt update, package resolution, input hash) | $(cl "${P[resolve]:-}") | (in the steps below) |
| packages | $(cl "${P[build]:-}") (mmdebstrap) | $(cl "$pk") |
| &nbsp;&nbsp;debos: seed the shared .deb cache (hardlinks, twice) | | $(cl "${DP[phase.seed]:-}") |
| &nbsp;&nbsp;debos: debootstrap --variant=minbase $DEBOS_SUITE | | $(cl "${DP[phase.debootstrap]:-}") |
| &nbsp;&nbsp;debos: apt sources, apt-get update, dist-upgrade | | $(cl "${DP[phase.apt-setup]:-}") |
| &nbsp;&nbsp;debos: apt action (update: false) | | $(cl "${DP[phase.apt-install]:-}") |
| customize (add-files, postprocess, units) | $(cl "${P[customize]:-}") | $(cl "${DP[phase.customize]:-}") |
| initramfs (dracut --no-hostonly --add ostree, zstd) | $(cl "${P[initramfs]:-}") | $(cl "${DP[phase.initramfs]:-}") |
| layout (OSTree conversion) | $(cl "${P[layout]:-}") | $(cl "${DP[phase.layout]:-}") |
| commit | $(cl "${P[commit]:-}") | $(cl "${DP[phase.commit]:-}") (\`ostree init\`, \`ostree-commit\` action, \`ostree summary -u\`) |
| publish (summary) | $(cl "${P[publish]:-}") | (in commit) |
| debos start-up, and removal of its scratch root at the end | | $(cl "$(awk -v a="${DP[phase.startup]:-0}" -v b="${DP[phase.finish]:-0}" 'BEGIN { print a + b }')") |
| **total (wall, whole command)** | **$(cl "$c")** | **$(cl "${T[compose_debos]}")** |

debos's phases are the recipe's actions, timed from its log. Its \`ostree-commit\` action is
libostree's commit on one thread, as \`ostree commit\`; slipway writes objects with one worker
per core (row 3).

Packages: ${V[pkg_same]} of slipway's ${V[packages]} at the same version in debos's commit
(${V[pkg_debos]} packages); only in slipway's: ${V[pkg_only_slipway]:-none}; only in debos's:
${V[pkg_only_debos]:-none}${V[pkg_versions]:+; **at other versions**: ${V[pkg_versions]}}.
(debootstrap merges /usr itself and installs usr-is-merged; mmdebstrap resolves
init-system-helpers's \`usrmerge | usr-is-merged\` to usrmerge, which brings perl, so the recipe
adds usrmerge. Lists: \`$RESULTS/slipway-packages.txt\`, \`$RESULTS/debos-packages.txt\`.)

Downloads: debos keeps no .deb cache between runs (its scratch root goes at the end), so a
warm-up run would warm nothing; instead the recipe hardlinks the shared cache into its chroot
before debootstrap and before apt, and both use a seeded .deb whose checksum matches. Still
fetched during the measured run: ${DP[debootstrap_debs_fetched]:-?} .debs by debootstrap
(${DP[debootstrap_debs_list]:-none}: debootstrap takes $DEBOS_SUITE's own versions, and the cache holds
slipway's set, with newer versions from -updates or -security that apt-setup.sh upgrades to), ${DP[apt_debs_fetched]:-?} by apt
($(human "${DP[apt_bytes_fetched]:-0}")), and the index files (debootstrap's $DEBOS_SUITE Packages,
apt's -updates and -security lists) that a fresh chroot fetches every time. The machine received
$(human "${DP[net_rx_bytes]:-0}") over the network while debos ran (everything on the machine).
slipway downloaded ${V[slipway_downloaded]} .debs in 1.
EOF
}

# The results table's 1p row.
peer_row() {
    local r cold
    cold=$(printf '%.1f s' "${T[compose_cold]}")
    if [ "${V[debos]}" != run ]; then
        echo "| 1p | cold compose against debos (\`bench/debos/atomic-host.yaml\`) | $cold (the run of 1) | not measured: ${V[debos]} | | <= 0.5x | skipped |"
        return 0
    fi
    r=$(ratio "${T[compose_cold]}" "${T[compose_debos]}")
    echo "| 1p | cold compose against debos (\`bench/debos/atomic-host.yaml\`, same packages and cache) | $cold (the run of 1) | $(printf '%.1f s' "${T[compose_debos]}") (debos, no fakemachine) | ${r}x | <= 0.5x | $(verdict "$r" "<=" 0.5) |"
}

# compose-peer mode: the report of 1 and 1p alone, beside the results (BENCHMARKS.md untouched).
write_peer_report() {
    local out=$RESULTS/compose-peer.md r
    r=$(ratio "${T[compose_cold]}" "${T[compose_debos]}")
    {
        cat <<EOF
# slipway cold compose against debos

Generated by \`bench/run.sh compose-peer\` on ${V[date]}, slipway ${V[revision]}: measurements
1 and 1p of \`BENCHMARKS.md\` only. **Machine:** ${V[nproc]} cores (${V[cpu]}), ${V[mem]} RAM,
${V[os]}, kernel ${V[kernel]}; load average ${V[loadavg]} at the start,
$(cut -d' ' -f1-3 /proc/loadavg) at the end. Tools: libostree ${V[ostree]}, mmdebstrap
${V[mmdebstrap]}, debos ${V[debos_version]}. Before the measured runs a throwaway compose
(\`$BENCH/warm-repo\`; ${V[warm_text]}) filled the shared cache \`$CACHE\`.

| measurement | slipway | debos | ratio | target | result |
| --- | --- | --- | --- | --- | --- |
| cold compose of \`atomic-host.json\` (fresh repo, warm .deb cache) | $(printf '%.1f s' "${T[compose_cold]}") | $(printf '%.1f s' "${T[compose_debos]}") | ${r}x | <= 0.5x | $(verdict "$r" "<=" 0.5) |

## 1p. Cold compose: slipway against debos

EOF
        peer_section
        cat <<EOF

## Load during each measurement

"Rest of the machine": CPU-seconds (out of ${V[nproc]} x wall) the command did not account for
while it ran (other users, and kernel work such as writeback); see BENCHMARKS.md.

| measurement | wall | own CPU | rest of the machine |
| --- | --- | --- | --- |
$(load_row compose_cold)
$(load_row compose_debos)

## Commands

Run from \`$SRC\` as root (the work directory is \`$BENCH\`; \$MIRROR and \$SECURITY are the
host's mirrors for $DEBOS_SUITE and $DEBOS_SUITE-security, read from \`$SOURCES\`):

\`\`\`sh
$(printf '%s' "$COMMANDS")
\`\`\`
EOF
        if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
            printf '\n## Check failures\n\n'
            printf -- '- %s\n' "${CHECK_FAILURES[@]}"
        fi
    } > "$out"
    cat "$out"
    say "wrote $out"
    say "cold compose against debos: ${r}x ($(verdict "$r" "<=" 0.5))"
    if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
        printf '%s\n' "${CHECK_FAILURES[@]}" >&2
        die "correctness checks failed (see $out)"
    fi
}

# ----------------------------------------------------------------------------------------------
# 1. Cold compose: slipway into a fresh repository
# ----------------------------------------------------------------------------------------------

REPO=$BENCH/slipway-repo
if [ "$MODE" = recompose ] || [ "$MODE" = all ]; then
    # The packages 1r adds, in the .deb cache too (a throwaway compose that uses no package
    # cache): 1r measures slipway, not the mirror.
    mkdir -p "$BENCH/recompose-warm"
    printf '{"include": "%s", "packages": ["hello", "cron"]}\n' "$TREEFILE" > "$BENCH/recompose-warm/cron.json"
    "$SLIPWAY" compose tree --repo "$BENCH/recompose-warm/repo" --cachedir "$CACHE" --no-package-cache \
        "$BENCH/recompose-warm/cron.json" > "$LOGS/recompose-warm.out" 2> "$LOGS/recompose-warm.err" ||
        { tail -n 30 "$LOGS/recompose-warm.err" >&2; die "the warm-up compose of 1r failed"; }
fi
# Cold: a fresh repository and an empty package cache (the warm-up filled it); the .deb cache
# stays warm.
rm -rf "$CACHE/packages"
debs_before=$(deb_count)
measure compose_cold "$SLIPWAY" compose tree --repo "$REPO" --cachedir "$CACHE" \
    --write-composejson-to "$RESULTS/compose-cold.json" "$TREEFILE"
V[slipway_downloaded]=$(($(deb_count) - debs_before))
[ "$(json_scalar "$RESULTS/compose-cold.json" changed)" = true ] || die "the cold compose made no commit"
V[commit]=$(json_scalar "$RESULTS/compose-cold.json" commit)
V[packages]=$(json_scalar "$RESULTS/compose-cold.json" package_count)
V[kver]=$(json_scalar "$RESULTS/compose-cold.json" kernel_version)

if [ "$MODE" = compose-peer ]; then
    measure_debos_peer
    write_peer_report
    exit 0
fi
if [ "$MODE" = recompose ]; then
    measure_debos_peer
    measure_recompose
    recompose_section > "$RESULTS/recompose.md"
    replace_section recompose
    cat "$RESULTS/recompose.md"
    if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
        printf '%s\n' "${CHECK_FAILURES[@]}" >&2
        die "correctness checks failed (see $REPORT)"
    fi
    exit 0
fi

# ----------------------------------------------------------------------------------------------
# 2. No-op recompose
# ----------------------------------------------------------------------------------------------

measure3 compose_noop "$SLIPWAY" compose tree --repo "$REPO" --cachedir "$CACHE" \
    --write-composejson-to "$RESULTS/compose-noop.json" "$TREEFILE"
V[noop_changed]=$(json_scalar "$RESULTS/compose-noop.json" changed)
[ "${V[noop_changed]}" = false ] || CHECK_FAILURES+=("no-op recompose: composejson says \"changed\": ${V[noop_changed]}")
[ "$(ostree rev-parse --repo="$REPO" "$REF")" = "${V[commit]}" ] ||
    CHECK_FAILURES+=("no-op recompose moved the ref")

# ----------------------------------------------------------------------------------------------
# 4. Commit size (of the repository from 1)
# ----------------------------------------------------------------------------------------------

V[repo_bytes]=$(du -sb "$REPO" | cut -f1)
V[repo_objects]=$(object_counts "$REPO")
# The commit's files uncompressed (regular files of `ostree ls -R`).
read -r 'V[tree_bytes]' 'V[tree_files]' < <(ostree ls -R --repo="$REPO" "$REF" | awk '$1 ~ /^-/ { s += $4; n++ } END { print s + 0, n + 0 }')
V[initramfs_bytes]=$(ostree ls --repo="$REPO" "$REF" "/usr/lib/modules/${V[kver]}/initramfs.img" | awk '{ print $4 }')

# ----------------------------------------------------------------------------------------------
# 1 (baseline). The naive pipeline, same packages, same cache
# ----------------------------------------------------------------------------------------------

mkdir -p "$BENCH/baseline"
commit_packages "$REPO" "$REF" > "$BENCH/baseline/packages.txt"
measure compose_baseline "$SRC/bench/baseline-compose.sh" --debs "$CACHE/apt/archives" \
    --sources "$SOURCES" --packages "$BENCH/baseline/packages.txt" \
    --rootfs "$BENCH/baseline/rootfs" --repo "$BENCH/baseline/repo" \
    --times "$RESULTS/baseline-times.txt" --log "$LOGS/baseline-mmdebstrap.log"
declare -A BP   # baseline phases
while read -r k v; do BP[$k]=$v; done < "$RESULTS/baseline-times.txt"
V[baseline_repo_bytes]=$(du -sb "$BENCH/baseline/repo" | cut -f1)

# 1p: debos, after the baseline (same cache, same package set).
measure_debos_peer

# ----------------------------------------------------------------------------------------------
# 3. Commit stage: one converted tree, `ostree commit` against `slipway compose commit`
# ----------------------------------------------------------------------------------------------

TREE=$BENCH/baseline/rootfs      # converted and already read once (page cache warm for both)
measure_commit_stage "$TREE" "$BENCH"
c_ostree=${V[c_ostree]}
c_slipway=${V[c_slipway]}
# Pull slipway's commit (by checksum, so no ref moves) into the ostree repository and compare.
ostree pull-local --repo="$BENCH/commit-ostree" "$BENCH/commit-slipway" "$c_slipway" \
    > "$LOGS/pull-local.out" 2>&1 || die "ostree pull-local failed: $(tail -n 5 "$LOGS/pull-local.out")"
V[pull_local]=$(tail -n 1 "$LOGS/pull-local.out")
ostree diff --repo="$BENCH/commit-ostree" "$c_ostree" "$c_slipway" > "$RESULTS/commit-diff.txt"
V[diff_lines]=$(wc -l < "$RESULTS/commit-diff.txt")
if [ "${V[diff_lines]}" = 0 ]; then
    V[identical]="identical (\`ostree diff\` prints nothing)"
else
    V[identical]="DIFFERENT: ${V[diff_lines]} paths (see $RESULTS/commit-diff.txt)"
    CHECK_FAILURES+=("commit stage: the two commits differ in ${V[diff_lines]} paths")
fi

# ----------------------------------------------------------------------------------------------
# 1r. Recompose with the package cache: hello, then cron, into a hard-linked copy of 1's
#     repository (the same objects; 1's ref and summary stay on the cold commit for 5 and 6).
#     1r's commit stage is 3's.
# ----------------------------------------------------------------------------------------------

rm -rf "$BENCH/recompose"
mkdir -p "$BENCH/recompose"
cp -al "$REPO" "$BENCH/recompose/repo"
rm -f "$BENCH/recompose/repo/slipway-compose.lock"
measure_recompose_adds "$BENCH/recompose/repo"
V[commit_tree_text]="one tree, section 3's (the baseline's converted tree)"
[ "$(ostree rev-parse --repo="$REPO" "$REF")" = "${V[commit]}" ] ||
    CHECK_FAILURES+=("1r moved the ref of 1's repository")

# ----------------------------------------------------------------------------------------------
# 5. Images
# ----------------------------------------------------------------------------------------------

RAW=$BENCH/images/host.raw
QCOW=$BENCH/images/host.qcow2
measure3 image_raw "$SLIPWAY" image --repo "$REPO" --ref "$REF" --format raw -o "$RAW" --force \
    --cachedir "$CACHE"
measure3 image_qcow2 "$SLIPWAY" image --repo "$REPO" --ref "$REF" --format qcow2 -o "$QCOW" --force \
    --cachedir "$CACHE"
V[image_leftovers]=$(image_workdirs | wc -l)
V[image_leftover_bytes]=$( (image_workdirs | xargs -r du -sbc 2>/dev/null || echo "0 total") | awk '/total$/ { print $1 }')
V[image_leftover_text]="The 6 image builds left no work directory behind in \`$CACHE/work\`."
if [ "${V[image_leftovers]}" != 0 ]; then
    V[image_leftover_text]="Work directories the 6 image builds left behind in \`$CACHE/work\`: \
${V[image_leftovers]} ($(human "${V[image_leftover_bytes]}")): a regression, slipway removes its
work directories (see \`$LOGS/image_*.err\`)."
    say "warning: the 6 image builds left ${V[image_leftovers]} work directories in $CACHE/work ($(human "${V[image_leftover_bytes]}"))"
fi
V[raw_alloc]=$(du -B1 "$RAW" | cut -f1)
V[raw_virtual]=$(stat -c %s "$RAW")
V[qcow_file]=$(stat -c %s "$QCOW")
V[qcow_alloc]=$(du -B1 "$QCOW" | cut -f1)
V[qcow_virtual]=$(qemu-img info --output=json "$QCOW" | awk -F'[:,]' '/"virtual-size"/ { gsub(/ /, "", $2); print $2; exit }')

# ----------------------------------------------------------------------------------------------
# 6. Boot to SSH (the slow image tests record their times)
# ----------------------------------------------------------------------------------------------

BOOT_JSONL=$RESULTS/boot.jsonl
V[boot]=skipped
if [ "${SLIPWAY_BENCH_SKIP_BOOT:-0}" = 1 ]; then
    say "boot: skipped (SLIPWAY_BENCH_SKIP_BOOT=1)"
else
    rm -f "$BOOT_JSONL"
    boot_cmd=(env SLIPWAY_BENCH_OUT="$BOOT_JSONL" cargo test --release --test image_slow --
        --ignored --test-threads=1 --nocapture hybrid_image_boots_under_seabios hybrid_image_boots_under_ovmf)
    COMMANDS+="(cd $SRC && $(quote "${boot_cmd[@]}"))"$'\n'
    say "boot: ${boot_cmd[*]} (builds the tests' own host and image first; minutes under TCG)"
    start=$(date +%s.%N)
    if (cd "$SRC" && "${boot_cmd[@]}") > "$LOGS/boot.out" 2> "$LOGS/boot.err"; then
        V[boot]=ok
    else
        V[boot]=failed
        tail -n 40 "$LOGS/boot.err" >&2
        say "boot: the image tests FAILED; logs: $LOGS/boot.err"
    fi
    T[boot_test]=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
fi
boot_value() { # NAME FIELD
    [ -f "$BOOT_JSONL" ] || return 0
    grep -E "\"name\": ?\"boot_to_ssh_$1\"" "$BOOT_JSONL" | tail -n 1 |
        sed -n "s/.*\"$2\": *\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p"
}
V[boot_bios]=$(boot_value image-bios value)
V[boot_uefi]=$(boot_value image-uefi value)
V[accel]=$(boot_value image-bios accel)
V[accel_why]=$(grep -h -o '\[slipway-vm\] accel [a-z]*: .*' "$LOGS/boot.err" "$LOGS/boot.out" 2>/dev/null | head -n 1 | sed 's/^\[slipway-vm\] //') || true
[ -n "${V[accel]}" ] || V[accel]=$(boot_value image-uefi accel)
[ -n "${V[accel]}" ] || V[accel]=unknown

if [ "${SLIPWAY_BENCH_SKIP_HOST:-0}" = 1 ]; then
    V[host]="skipped (SLIPWAY_BENCH_SKIP_HOST=1)"
else
    measure_host
fi

if [ "${SLIPWAY_BENCH_SKIP_PXE:-0}" = 1 ]; then
    PX[status]="skipped (SLIPWAY_BENCH_SKIP_PXE=1)"
else
    measure_pxe
fi

if [ "${SLIPWAY_BENCH_SKIP_PXE:-0}" != 1 ]; then
    measure_install
fi

if [ "${SLIPWAY_BENCH_SKIP_SERVICES:-0}" != 1 ]; then
    measure_services
fi

# ----------------------------------------------------------------------------------------------
# BENCHMARKS.md
# ----------------------------------------------------------------------------------------------

V[loadavg_end]=$(cut -d' ' -f1-3 /proc/loadavg)
script_secs=$(awk -v a="$script_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
r_compose=$(ratio "${T[compose_cold]}" "${T[compose_baseline]}")
r_commit=$(ratio "${T[commit_slipway]}" "${T[commit_ostree]}")
r_peer=
[ "${V[debos]}" != run ] || r_peer=$(ratio "${T[compose_cold]}" "${T[compose_debos]}")
s() { printf '%.1f s' "$1"; }
boot_cell() {
    if [ -n "$1" ] && [ "${V[boot]}" = failed ]; then printf '%.1f s (the test failed after the boot, see 6)' "$1"
    elif [ -n "$1" ]; then printf '%.1f s' "$1"
    elif [ "${V[boot]}" = skipped ]; then printf 'not measured (skipped)'
    else printf 'not measured (test %s)' "${V[boot]}"; fi
}
case "${V[accel]}" in
    kvm) accel_text="KVM" ;;
    tcg) accel_text="TCG (software emulation: boots are several times slower than with KVM)" ;;
    *) accel_text="unknown (no boot measured)" ;;
esac

{
cat <<EOF
# slipway benchmarks

Generated by \`bench/run.sh\` (\`make bench\`) on ${V[date]}, slipway ${V[revision]}.
Every number below comes from this one run on this one machine. The machine is shared and
noisy: treat differences of a few percent as noise.

**Machine:** ${V[nproc]} cores (${V[cpu]}), ${V[mem]} RAM, ${V[os]}, kernel ${V[kernel]};
load average ${V[loadavg]} at the start, ${V[loadavg_end]} at the end. QEMU boots: **${accel_text}**.
Tools: libostree ${V[ostree]}, mmdebstrap ${V[mmdebstrap]}, debos ${V[debos_version]}.

## Results

| # | measurement | slipway | baseline | ratio | target | result |
| --- | --- | --- | --- | --- | --- | --- |
| 1 | cold compose of \`atomic-host.json\` (fresh repo, warm .deb cache) | $(s "${T[compose_cold]}") | $(s "${T[compose_baseline]}") (mmdebstrap + dracut + shell + \`ostree commit\`) | ${r_compose}x | <= 0.6x | $(verdict "$r_compose" "<=" 0.6) |
$(peer_row)
| 2 | no-op recompose (median of 3: ${V[compose_noop.runs]}) | $(s "${T[compose_noop]}") | | | < 2 s | $(verdict "${T[compose_noop]}" "<" 2) |
| 3 | commit stage, same converted tree into a fresh archive repo | $(s "${T[commit_slipway]}") (\`slipway compose commit\`) | $(s "${T[commit_ostree]}") (\`ostree commit\`) | ${r_commit}x | <= 0.45x | $(verdict "$r_commit" "<=" 0.45) |
| 1r | add \`hello\` to the default host (package stage: ${V[path_hello]}) | $(s "${T[compose_hello]}") | $(s "${T[compose_cold]}") (the cold compose of 1) | $(ratio "${T[compose_hello]}" "${T[compose_cold]}")x | <= 0.35x | $(verdict "$(ratio "${T[compose_hello]}" "${T[compose_cold]}")" "<=" 0.35) |
| 1r | then add \`cron\` (scripts, a unit; package stage: ${V[path_cron]}) | $(s "${T[compose_cron]}") | $(s "${T[compose_cold]}") (the cold compose of 1) | $(ratio "${T[compose_cron]}" "${T[compose_cold]}")x | | info |
| 4 | commit size (repository after 1) | $(human "${V[repo_bytes]}") | $(human "${V[baseline_repo_bytes]}") (baseline repo) | $(ratio "${V[repo_bytes]}" "${V[baseline_repo_bytes]}")x | | info |
| 5a | \`slipway image --format raw\` (median of 3: ${V[image_raw.runs]}) | $(s "${T[image_raw]}") | | | | info |
| 5b | \`slipway image --format qcow2\` (median of 3: ${V[image_qcow2.runs]}) | $(s "${T[image_qcow2]}") | | | | info |
| 6a | boot to SSH, hybrid image under SeaBIOS (${V[accel]^^}) | $(boot_cell "${V[boot_bios]}") | | | | info |
| 6b | boot to SSH, hybrid image under OVMF (${V[accel]^^}) | $(boot_cell "${V[boot_uefi]}") | | | | info |

Ratios are slipway / baseline (1p: slipway / debos); lower is better.

## 1. Cold compose, phase by phase

${V[packages]} packages (kernel ${V[kver]}), commit \`${V[commit]}\`. Before the measured runs a
throwaway compose (\`$BENCH/warm-repo\`; ${V[warm_text]}) filled the shared cache
\`$CACHE\`: .deb files downloaded during the measured runs: slipway ${V[slipway_downloaded]},
baseline ${BP[downloaded_debs]:-?}. The baseline's mmdebstrap still runs its own
\`apt-get update\` (${BP[rootfs.apt-update]:-?} s, included), as a naive pipeline does; slipway's
resolve phase refreshes its cached lists.

| phase | slipway | baseline |
| --- | --- | --- |
EOF
json_phases "$RESULTS/compose-cold.json" > "$RESULTS/slipway-phases.txt"
declare -A SP
while read -r k v; do SP[$k]=$v; done < "$RESULTS/slipway-phases.txt"
cell() { [ -n "${1:-}" ] && printf '%.1f s' "$1" || printf -- '-'; }
echo "| resolve (apt update, package resolution, input hash) | $(cell "${SP[resolve]:-}") | (inside mmdebstrap) |"
echo "| packages (mmdebstrap) | $(cell "${SP[build]:-}") | $(cell "${BP[rootfs]:-}") |"
for sub in apt-update download extract install-essential install-remaining cleanup; do
    [ -n "${BP[rootfs.$sub]:-}" ] && echo "| &nbsp;&nbsp;baseline mmdebstrap: $sub | | $(cell "${BP[rootfs.$sub]}") |"
done
echo "| customize (add-files, postprocess, units) | $(cell "${SP[customize]:-}") | skipped |"
echo "| initramfs (dracut --no-hostonly --add ostree) | $(cell "${SP[initramfs]:-}") | $(cell "${BP[initramfs]:-}") |"
echo "| layout (OSTree conversion) | $(cell "${SP[layout]:-}") | $(cell "${BP[layout]:-}") |"
echo "| commit | $(cell "${SP[commit]:-}") | $(cell "${BP[commit]:-}") (incl. \`ostree summary -u\`) |"
echo "| publish (summary) | $(cell "${SP[publish]:-}") | (in commit) |"
echo "| **total (wall, whole command)** | **$(s "${T[compose_cold]}")** | **$(s "${T[compose_baseline]}")** |"
cat <<EOF

Where the difference comes from: the baseline's kernel hook builds an initramfs while packages
install ($(human "${BP[hook_initramfs_bytes]:-0}") in /boot, thrown away; slipway diverts dracut
until its own single run), the baseline's dracut uses its default compressor
(${BP[initramfs_compression]:-?}: $(human "${BP[initramfs_bytes]:-0}")) where slipway uses zstd
($(human "${V[initramfs_bytes]:-0}")), and \`ostree commit\` compresses objects on one core where
slipway writes them with one worker per core (row 3).

The baseline skips the treefile's add-files, postprocess script, units, default target, the
sysusers.d file and tmp.mount (slipway's "customize" phase above: well under a second), so if
anything it is favoured.

## 1p. Cold compose: slipway against debos

EOF
peer_section
echo
recompose_section
cat <<EOF

## 2. No-op recompose

The same command as 1 against the repository from 1: composejson \`"changed": ${V[noop_changed]}\`,
the ref unchanged. Runs: ${V[compose_noop.runs]} s.

## 3. Commit stage on one tree

The baseline's converted tree (\`$TREE\`), committed into two fresh \`archive\` repositories, each made by its tool (libostree's zlib level 6, slipway's 4):

| | wall time | repository size (\`du -sb\`) |
| --- | --- | --- |
| \`ostree commit\` | $(s "${T[commit_ostree]}") | ${V[commit_ostree_bytes]} B ($(human "${V[commit_ostree_bytes]}")) |
| \`slipway compose commit\` | $(s "${T[commit_slipway]}") | ${V[commit_slipway_bytes]} B ($(human "${V[commit_slipway_bytes]}")) |

Contents: **${V[identical]}** between \`$c_ostree\` (ostree) and \`$c_slipway\` (slipway),
after \`ostree pull-local\` of slipway's commit into the ostree repository ("${V[pull_local]}":
only the commit object differs, every dirtree, dirmeta and file object is shared).
The tree had just been read by the baseline's own commit, so both ran with a warm page cache.

## 4. Commit size

slipway's repository after 1: ${V[repo_bytes]} B ($(human "${V[repo_bytes]}")), objects
(\`find objects -type f\`): ${V[repo_objects]}. The commit holds ${V[tree_files]} regular files,
${V[tree_bytes]} B ($(human "${V[tree_bytes]}")) uncompressed. The baseline's repository:
${V[baseline_repo_bytes]} B ($(human "${V[baseline_repo_bytes]}")) (same files except the initramfs:
${BP[initramfs_compression]:-?} there, zstd in slipway's, and the baseline's generated tmpfiles.d file).

## 5. Images

| format | wall time (median of 3) | file size | allocated (\`du -B1\`) | virtual size |
| --- | --- | --- | --- | --- |
| raw | $(s "${T[image_raw]}") (${V[image_raw.runs]}) | ${V[raw_virtual]} B (sparse) | ${V[raw_alloc]} B ($(human "${V[raw_alloc]}")) | $(human "${V[raw_virtual]}") |
| qcow2 | $(s "${T[image_qcow2]}") (${V[image_qcow2.runs]}) | ${V[qcow_file]} B ($(human "${V[qcow_file]}")) | ${V[qcow_alloc]} B ($(human "${V[qcow_alloc]}")) | $(human "${V[qcow_virtual]}") |

Against the commit: $(human "${V[tree_bytes]}") of files uncompressed, $(human "${V[repo_bytes]}") as an
archive repository; the raw image allocates $(ratio "${V[raw_alloc]}" "${V[tree_bytes]}")x the
uncompressed files (one deployment: file systems, the /boot copy of kernel and initramfs, GRUB).

${V[image_leftover_text]}

## 6. Boot to SSH

EOF
if [ "${V[boot]}" = ok ]; then
    cat <<EOF
From power-on to an SSH login on the hybrid raw image (the slow tests' image: their own compose
of the same treefile with the test kickstart), QEMU with **${V[accel]^^}** (the VM harness: "${V[accel_why]:-no reason logged}"):
SeaBIOS $(boot_cell "${V[boot_bios]}"), OVMF $(boot_cell "${V[boot_uefi]}"). The whole test run
(build of the test binary, the tests' cached compose and image, both boots and their checks)
took ${T[boot_test]} s. Raw lines: \`$BOOT_JSONL\`.
EOF
elif [ "${V[boot]}" = skipped ]; then
    echo "**Not measured**: skipped with \`SLIPWAY_BENCH_SKIP_BOOT=1\`."
else
    if [ -n "${V[boot_bios]}${V[boot_uefi]}" ]; then
        echo "Boot to SSH under **${V[accel]^^}** (the VM harness: \"${V[accel_why]:-no reason logged}\"):"
        echo "SeaBIOS ${V[boot_bios]:-(none)} s, OVMF ${V[boot_uefi]:-(none)} s."
        echo
        echo "**The image test run failed** after those measurements (${T[boot_test]} s; log \`$LOGS/boot.err\`):"
    else
        echo "**Not measured: the image boot tests failed** (${T[boot_test]} s; log \`$LOGS/boot.err\`):"
    fi
    echo
    echo '```'
    grep -A 3 'panicked at' "$LOGS/boot.err" | head -n 12 || tail -n 5 "$LOGS/boot.err"
    echo '```'
fi
echo
host_section
echo
pxe_section
echo
install_section
if [ "${SLIPWAY_BENCH_SKIP_SERVICES:-0}" != 1 ]; then
    echo
    services_section
fi
cat <<EOF

## Load during each measurement

The machine is shared. "Rest of the machine" is the CPU time (CPU-seconds, out of
${V[nproc]} x wall available) that the command did not account for while it ran: /proc/stat's
busy time minus the command's own user + system time (with its children). It holds other
users' processes, but also kernel work the command caused (writeback of the files it writes),
so a compose shows some even on an idle machine (about 10-20% here). A share well above that
means the command competed for the cores and its time is inflated (the parallel commit most
of all).

| measurement | wall | own CPU | rest of the machine |
| --- | --- | --- | --- |
EOF
for k in compose_cold compose_noop compose_baseline compose_debos commit_ostree commit_slipway image_raw image_qcow2; do
    [ -z "${T[$k]:-}" ] || load_row "$k"
done
cat <<EOF

## Commands

Run from \`$SRC\` as root, in this order (the work directory is \`$BENCH\`; the
baseline used the apt sources \`$SOURCES\`, where debos's \$MIRROR and \$SECURITY
were read from too):

\`\`\`sh
$(printf '%s' "$COMMANDS")
\`\`\`

Not timed: \`cargo build --release\`, the warm-up compose
(\`$SLIPWAY compose tree --repo $BENCH/warm-repo --cachedir $CACHE --write-composejson-to $RESULTS/compose-warm.json $TREEFILE\`),
\`ostree init\` of the two commit-stage repositories, the \`ostree pull-local\`/\`ostree diff\` check,
the package lists of 1p (\`ostree cat\` of the dpkg status file).
Logs of every command: \`$LOGS\`. The whole benchmark took ${script_secs} s.
EOF
if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
    echo
    echo "## Check failures"
    echo
    printf -- '- %s\n' "${CHECK_FAILURES[@]}"
fi
# The test suites' recorded runs (scripts/suite.sh, not this script) are carried over.
if [ -f "$REPORT" ] && grep -q '^<!-- suites:begin -->' "$REPORT"; then
    echo
    sed -n '/^<!-- suites:begin -->/,/^<!-- suites:end -->/p' "$REPORT"
fi
} | scrub_paths > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
say "wrote $REPORT (${script_secs} s in all)"
say "cold compose ${r_compose}x ($(verdict "$r_compose" "<=" 0.6)), no-op ${T[compose_noop]} s ($(verdict "${T[compose_noop]}" "<" 2)), commit stage ${r_commit}x ($(verdict "$r_commit" "<=" 0.45))"
[ -z "$r_peer" ] || say "cold compose against debos ${r_peer}x ($(verdict "$r_peer" "<=" 0.5))"

if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
    printf '%s\n' "${CHECK_FAILURES[@]}" >&2
    die "correctness checks failed (see $REPORT)"
fi
if [ "${V[boot]}" = failed ]; then
    die "the boot measurement failed (see $LOGS/boot.err)"
fi
