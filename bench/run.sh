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
#   2. No-op recompose: the same compose again; nothing changed, so it must stop after resolving
#      (composejson `"changed": false`). Target: under 2 s.
#   3. Commit stage: ONE converted tree (the baseline's, kept) committed by `ostree commit` and by
#      `slipway compose commit` into two fresh archive repositories; the two commits must have
#      identical contents (`ostree diff` after `ostree pull-local`). Target: slipway <= 0.6x.
#   4. Commit size: slipway's repository after (1), and its object count.
#   5. Image: `slipway image` raw and qcow2: wall time and file sizes against the commit's.
#   6. Boot to SSH: the slow image tests (SeaBIOS and OVMF) record how long the image takes to
#      answer SSH, and whether QEMU ran with KVM or TCG.
#
# Cheap commands (no-op recompose, images) run 3 times (median reported); the others once.
# Targets are reported (PASS/FAIL), not enforced: the script exits non-zero only when a
# measured command fails or a correctness check (changed: false, identical commits) fails.
#
# Environment:
#   SLIPWAY_BENCH_DIR        work directory (default /var/tmp/slipway-bench); the apt/.deb cache
#                            shared by slipway and the baseline is $SLIPWAY_BENCH_DIR/cache
#   SLIPWAY_BENCH_SOURCES    apt sources file for the baseline (default: the host's
#                            /etc/apt/sources.list.d/debian.sources, else /etc/apt/sources.list)
#   SLIPWAY_BENCH_SKIP_BOOT  1: skip step 6 (marked "not measured" in the report)
#   SLIPWAY_TEST_CACHE       the slow tests' cache (their composed host and images), see tests/
set -euo pipefail

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
        die "$key failed (exit $rc); logs: $LOGS/$key.err"
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# verdict VALUE OP LIMIT: PASS or FAIL
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? (v <= l) : (v < l); print (ok ? "PASS" : "FAIL") }'; }
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

# ----------------------------------------------------------------------------------------------
# Set-up: binary, machine, work directory, warm cache
# ----------------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, ostree, image building)"
for p in mmdebstrap ostree bwrap qemu-img cargo awk; do
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

mkdir -p "$BENCH" "$CACHE"
say "building slipway (cargo build --release)"
(cd "$SRC" && cargo build --release) > /dev/null 2> "$BENCH/cargo-build.log" ||
    { tail -n 30 "$BENCH/cargo-build.log" >&2; die "cargo build --release failed"; }

rm -rf "$RESULTS" "$LOGS" "$BENCH/slipway-repo" "$BENCH/baseline" "$BENCH/commit-ostree" \
    "$BENCH/commit-slipway" "$BENCH/images"
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
# 1. Cold compose: slipway into a fresh repository
# ----------------------------------------------------------------------------------------------

REPO=$BENCH/slipway-repo
debs_before=$(deb_count)
measure compose_cold "$SLIPWAY" compose tree --repo "$REPO" --cachedir "$CACHE" \
    --write-composejson-to "$RESULTS/compose-cold.json" "$TREEFILE"
V[slipway_downloaded]=$(($(deb_count) - debs_before))
[ "$(json_scalar "$RESULTS/compose-cold.json" changed)" = true ] || die "the cold compose made no commit"
V[commit]=$(json_scalar "$RESULTS/compose-cold.json" commit)
V[packages]=$(json_scalar "$RESULTS/compose-cold.json" package_count)
V[kver]=$(json_scalar "$RESULTS/compose-cold.json" kernel_version)

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

# ----------------------------------------------------------------------------------------------
# 3. Commit stage: one converted tree, `ostree commit` against `slipway compose commit`
# ----------------------------------------------------------------------------------------------

TREE=$BENCH/baseline/rootfs      # converted and already read once (page cache warm for both)
ostree init --repo="$BENCH/commit-ostree" --mode=archive
ostree init --repo="$BENCH/commit-slipway" --mode=archive
measure commit_ostree ostree commit --repo="$BENCH/commit-ostree" --branch=bench/x --tree=dir="$TREE"
measure commit_slipway "$SLIPWAY" compose commit --repo "$BENCH/commit-slipway" --ref bench/x "$TREE"
V[commit_ostree_bytes]=$(du -sb "$BENCH/commit-ostree" | cut -f1)
V[commit_slipway_bytes]=$(du -sb "$BENCH/commit-slipway" | cut -f1)
c_ostree=$(ostree rev-parse --repo="$BENCH/commit-ostree" bench/x)
c_slipway=$(ostree rev-parse --repo="$BENCH/commit-slipway" bench/x)
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

# ----------------------------------------------------------------------------------------------
# BENCHMARKS.md
# ----------------------------------------------------------------------------------------------

V[loadavg_end]=$(cut -d' ' -f1-3 /proc/loadavg)
script_secs=$(awk -v a="$script_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
r_compose=$(ratio "${T[compose_cold]}" "${T[compose_baseline]}")
r_commit=$(ratio "${T[commit_slipway]}" "${T[commit_ostree]}")
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
Tools: libostree ${V[ostree]}, mmdebstrap ${V[mmdebstrap]}.

## Results

| # | measurement | slipway | baseline | ratio | target | result |
| --- | --- | --- | --- | --- | --- | --- |
| 1 | cold compose of \`atomic-host.json\` (fresh repo, warm .deb cache) | $(s "${T[compose_cold]}") | $(s "${T[compose_baseline]}") (mmdebstrap + dracut + shell + \`ostree commit\`) | ${r_compose}x | <= 0.6x | $(verdict "$r_compose" "<=" 0.6) |
| 2 | no-op recompose (median of 3: ${V[compose_noop.runs]}) | $(s "${T[compose_noop]}") | | | < 2 s | $(verdict "${T[compose_noop]}" "<" 2) |
| 3 | commit stage, same converted tree into a fresh archive repo | $(s "${T[commit_slipway]}") (\`slipway compose commit\`) | $(s "${T[commit_ostree]}") (\`ostree commit\`) | ${r_commit}x | <= 0.6x | $(verdict "$r_commit" "<=" 0.6) |
| 4 | commit size (repository after 1) | $(human "${V[repo_bytes]}") | $(human "${V[baseline_repo_bytes]}") (baseline repo) | $(ratio "${V[repo_bytes]}" "${V[baseline_repo_bytes]}")x | | info |
| 5a | \`slipway image --format raw\` (median of 3: ${V[image_raw.runs]}) | $(s "${T[image_raw]}") | | | | info |
| 5b | \`slipway image --format qcow2\` (median of 3: ${V[image_qcow2.runs]}) | $(s "${T[image_qcow2]}") | | | | info |
| 6a | boot to SSH, hybrid image under SeaBIOS (${V[accel]^^}) | $(boot_cell "${V[boot_bios]}") | | | | info |
| 6b | boot to SSH, hybrid image under OVMF (${V[accel]^^}) | $(boot_cell "${V[boot_uefi]}") | | | | info |

Ratios are slipway / baseline; lower is better.

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

## 2. No-op recompose

The same command as 1 against the repository from 1: composejson \`"changed": ${V[noop_changed]}\`,
the ref unchanged. Runs: ${V[compose_noop.runs]} s.

## 3. Commit stage on one tree

The baseline's converted tree (\`$TREE\`), committed into two fresh \`archive\` repositories:

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
for k in compose_cold compose_noop compose_baseline commit_ostree commit_slipway image_raw image_qcow2; do
    [ -n "${T[$k]:-}" ] || continue
    share=$(awk -v o="${OTHER[$k]}" -v w="${T[$k]}" -v n="${V[nproc]}" 'BEGIN { printf "%.0f", 100 * o / (w * n) }')
    echo "| $k | $(s "${T[$k]}") | ${CPU[$k]} s | ${OTHER[$k]} s (${share}% of the machine) |"
done
cat <<EOF

## Commands

Run from \`$SRC\` as root, in this order (the work directory is \`$BENCH\`; the
baseline used the apt sources \`$SOURCES\`):

\`\`\`sh
$(printf '%s' "$COMMANDS")
\`\`\`

Not timed: \`cargo build --release\`, the warm-up compose
(\`$SLIPWAY compose tree --repo $BENCH/warm-repo --cachedir $CACHE --write-composejson-to $RESULTS/compose-warm.json $TREEFILE\`),
\`ostree init\` of the two commit-stage repositories, the \`ostree pull-local\`/\`ostree diff\` check.
Logs of every command: \`$LOGS\`. The whole benchmark took ${script_secs} s.
EOF
if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
    echo
    echo "## Check failures"
    echo
    printf -- '- %s\n' "${CHECK_FAILURES[@]}"
fi
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
say "wrote $REPORT (${script_secs} s in all)"
say "cold compose ${r_compose}x ($(verdict "$r_compose" "<=" 0.6)), no-op ${T[compose_noop]} s ($(verdict "${T[compose_noop]}" "<" 2)), commit stage ${r_commit}x ($(verdict "$r_commit" "<=" 0.6))"

if [ ${#CHECK_FAILURES[@]} -gt 0 ]; then
    printf '%s\n' "${CHECK_FAILURES[@]}" >&2
    die "correctness checks failed (see $REPORT)"
fi
if [ "${V[boot]}" = failed ]; then
    die "the boot measurement failed (see $LOGS/boot.err)"
fi
