#!/bin/bash
# run-debos.sh: build bench/debos/atomic-host.yaml with debos (no fakemachine: debos's KVM
# backend hangs on the benchmark machine and its emulated one is far slower), into a fresh
# archive repository, and time each of the recipe's actions. bench/run.sh times the whole
# command as the compose benchmark's peer.
#
# Usage (as root):
#   run-debos.sh --workdir DIR --mirror URL [--security URL] [--updates yes|no]
#                [--suite bookworm] [--debs DIR] [--ref REF] [--times FILE] [--log FILE]
#     --workdir   must not exist. debos runs in it (its scratch root, .debos-*, is made in the
#                 current directory) with the artifact directory DIR/artifacts; the commit goes
#                 to DIR/artifacts/repo (archive mode), the branch REF
#                 (default debos/bookworm/x86_64/atomic-host).
#     --mirror    the Debian mirror for SUITE and SUITE-updates (unless --updates no)
#     --security  the mirror for SUITE-security (none if not given)
#     --debs      .debs seeded into the chroot before debootstrap and apt (slipway's cache)
#     --times     where to write `key value` lines (default: none): `phase.NAME seconds` per
#                 group of actions, `debootstrap_debs_fetched N`, `apt_debs_fetched N`,
#                 `apt_bytes_fetched N` (apt's "Need to get"), `net_rx_bytes N` (received by
#                 the machine during the run, all interfaces but lo: index files included)
#     --log       debos's output, a timestamp per line (default: DIR.log)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RECIPE=$HERE/atomic-host.yaml
workdir='' mirror='' security='' updates=yes suite=bookworm debs='' ref=debos/bookworm/x86_64/atomic-host
times=/dev/null log=
while [ $# -gt 0 ]; do
    case "$1" in
        --workdir) workdir=$2 ;;
        --mirror) mirror=$2 ;;
        --security) security=$2 ;;
        --updates) updates=$2 ;;
        --suite) suite=$2 ;;
        --debs) debs=$2 ;;
        --ref) ref=$2 ;;
        --times) times=$2 ;;
        --log) log=$2 ;;
        *) echo "run-debos.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$workdir" ] || { echo "run-debos.sh: --workdir is required" >&2; exit 2; }
[ -n "$mirror" ] || { echo "run-debos.sh: --mirror is required" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run-debos.sh: run as root (debos without fakemachine)" >&2; exit 2; }
command -v debos > /dev/null || { echo "run-debos.sh: debos is missing (apt-get install debos)" >&2; exit 2; }
[ -e "$workdir" ] && { echo "run-debos.sh: $workdir exists" >&2; exit 2; }
workdir=$(realpath -m "$workdir")
log=$(realpath -m "${log:-$workdir.log}")
[ "$times" = /dev/null ] || times=$(realpath -m "$times")
[ -z "$debs" ] || debs=$(realpath "$debs")
mkdir -p "$workdir/artifacts" "$(dirname "$log")"
: > "$times"

net_rx() { awk -F'[: ]+' 'NR > 2 && $2 != "lo" { s += $3 } END { printf "%d", s }' /proc/net/dev; }

args=(--disable-fakemachine --artifactdir "$workdir/artifacts"
    -t "mirror:$mirror" -t "suite:$suite" -t "updates:$updates" -t "ref:$ref" -t repo:repo)
[ -z "$security" ] || args+=(-t "security:$security")
[ -z "$debs" ] || args+=(-t "debs:$debs")

rx0=$(net_rx)
start=$EPOCHREALTIME
rc=0
# Every output line gets a timestamp ($EPOCHREALTIME: no process per line), to split the run
# by action afterwards.
(cd "$workdir" && debos "${args[@]}" "$RECIPE") 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$log" || rc=$?
end=$EPOCHREALTIME
rx1=$(net_rx)
# debos removes its scratch directory itself; a failed run may leave it.
leftover=$(find "$workdir" -mindepth 1 -maxdepth 1 -name '.debos-*' | head -n 1)
if [ "$rc" != 0 ] || ! grep -q '==== Recipe done ====' "$log"; then
    tail -n 40 "$log" >&2
    echo "run-debos.sh: debos failed (exit $rc); log: $log${leftover:+; its scratch directory is left in $leftover}" >&2
    exit 1
fi

# Action groups: the recipe's action descriptions (`==== DESCRIPTION ====`), first words.
awk -v start="$start" -v end="$end" '
    function close_phase(t) { if (name != "") sum[name] += t - since }
    / ==== .* ====$/ {
        t = $1; close_phase(t)
        d = $0; sub(/^.* ==== /, "", d); sub(/ ====$/, "", d)
        if (d ~ /^Recipe done/) name = "finish"
        else if (d ~ /^seed/) name = "seed"
        else if (d ~ /^debootstrap/) name = "debootstrap"
        else if (d ~ /^apt sources/) name = "apt-setup"
        else if (d ~ /^apt install/) name = "apt-install"
        else if (d ~ /^add-files/ || d ~ /^units/) name = "customize"
        else if (d ~ /^initramfs/) name = "initramfs"
        else if (d ~ /^OSTree layout/) name = "layout"
        else if (d ~ /^ostree/) name = "commit"
        else name = "other"
        if (!(name in sum)) order[++n] = name
        sum[name] += 0; since = t
        if (first == "") first = t
    }
    END {
        close_phase(end)
        printf "phase.startup %.2f\n", first - start
        for (i = 1; i <= n; i++) printf "phase.%s %.2f\n", order[i], sum[order[i]]
        printf "total %.2f\n", end - start
    }' "$log" >> "$times"
{
    # debootstrap: "I: Retrieving NAME VERSION" for each .deb it downloads (index files have
    # no version); "I: Validating" alone means a seeded .deb was used.
    echo "debootstrap_debs_fetched $(grep -cE 'I: Retrieving [^ ]+ [^ ]+$' "$log" || true)"
    echo "debootstrap_debs_list $(grep -oE 'I: Retrieving [^ ]+ [^ ]+$' "$log" | awk '{ printf "%s%s=%s", sep, $3, $4; sep = " " }')"
    # apt: "Get:N URI SUITE/COMP ARCH NAME ARCH VERSION [SIZE]" per .deb; "Need to get X/Y".
    echo "apt_debs_fetched $(grep -cE 'Get:[0-9]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+ (amd64|all) [^ ]+ \[' "$log" || true)"
    # ("Need to get 0 B/85.6 MB of archives." or "Need to get 12.3 MB of archives.")
    awk '/Need to get / {
            sub(/^.*Need to get /, ""); u = $2; sub(/\/.*/, "", u)
            m = (u == "kB") ? 1e3 : (u == "MB") ? 1e6 : (u == "GB") ? 1e9 : 1
            s += $1 * m
         }
         END { printf "apt_bytes_fetched %d\n", s }' "$log"
    echo "net_rx_bytes $((rx1 - rx0))"
} >> "$times"
ostree log --repo="$workdir/artifacts/repo" "$ref" | head -n 3 >&2
