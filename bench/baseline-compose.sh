#!/bin/bash
# baseline-compose.sh: the "naive pipeline" slipway's `compose tree` is measured against.
#
# It builds the same host as `slipway compose tree treefiles/atomic-host.json` the way one
# would with stock tools and a shell script, and times each phase:
#
#   rootfs     plain `mmdebstrap --variant=minbase --mode=root --format=directory` with the
#              host's apt sources and the same package set (name=version, as slipway
#              resolved it). The .deb cache slipway filled is seeded into the chroot (hardlinks)
#              so neither side downloads packages. dracut is deliberately NOT diverted: the
#              kernel's postinst hook builds an initramfs that is thrown away, as a naive
#              pipeline does.
#   initramfs  dracut --no-hostonly --add ostree --reproducible --force inside the tree
#              (bubblewrap), with dracut's DEFAULT compression.
#   layout     the OSTree layout conversion, in shell: kernel to /usr/lib/modules/KVER,
#              dpkg database to /usr/share/dpkg/database, /var emptied into a tmpfiles.d file,
#              /etc to /usr/etc, toplevel links, /sysroot, empty dev/proc/sys/run/tmp/boot.
#   commit     `ostree commit --tree=dir=` into a fresh archive repository, then
#              `ostree summary -u` (slipway also updates the summary).
#
# Not done (the treefile's add-files, postprocess scripts, units, default-target, the
# sysusers.d file and tmp.mount): each is well under a second in slipway's own compose
# ("customize" phase), so leaving them out makes the baseline, if anything, faster.
#
# Usage:
#   baseline-compose.sh --debs DIR --sources FILE --packages FILE --rootfs DIR --repo DIR
#                       [--suite bookworm] [--times FILE] [--log FILE]
#     --debs      directory of .deb files to seed (slipway's CACHEDIR/apt/archives)
#     --sources   an apt sources file (deb822 or one-line), e.g. the host's debian.sources
#     --packages  file with one `name=version` (or `name`) per line
#     --rootfs    where the tree is built; must not exist. Kept afterwards (converted).
#     --repo      the archive repository to create; must not exist.
#     --times     where to write `phase seconds` lines (default: stderr only)
#     --log       mmdebstrap's output with a timestamp per line (default: ROOTFS.log)
# The tree's .debs that were NOT in the seed (i.e. downloaded) are counted and reported as
# `downloaded_debs N` in the times file.
set -euo pipefail

suite=bookworm
debs= sources= packages= rootfs= repo= times=/dev/null log=
while [ $# -gt 0 ]; do
    case "$1" in
        --debs) debs=$2 ;;
        --sources) sources=$2 ;;
        --packages) packages=$2 ;;
        --rootfs) rootfs=$2 ;;
        --repo) repo=$2 ;;
        --suite) suite=$2 ;;
        --times) times=$2 ;;
        --log) log=$2 ;;
        *) echo "baseline-compose.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in debs sources packages rootfs repo; do
    [ -n "${!v}" ] || { echo "baseline-compose.sh: --$v is required" >&2; exit 2; }
done
[ -e "$rootfs" ] && { echo "baseline-compose.sh: $rootfs exists" >&2; exit 2; }
[ -e "$repo" ] && { echo "baseline-compose.sh: $repo exists" >&2; exit 2; }
debs=$(realpath "$debs")
rootfs=$(realpath -m "$rootfs")
repo=$(realpath -m "$repo")
log=$(realpath -m "${log:-$rootfs.log}")
[ "$times" = /dev/null ] || times=$(realpath -m "$times")
mkdir -p "$(dirname "$rootfs")" "$(dirname "$repo")" "$(dirname "$log")"
: > "$times"

now() { date +%s.%N; }
say() { echo "baseline: $*" >&2; }
# record PHASE START: append the phase's wall time to the times file.
record() {
    local secs
    secs=$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
    echo "$1 $secs" >> "$times"
    say "$1: ${secs}s"
}

total_start=$(now)

# --- rootfs: plain mmdebstrap --------------------------------------------------------------
say "rootfs: mmdebstrap ($(wc -l < "$packages") packages)"
include=$(paste -sd, "$packages")
start=$(now)
# Seed the .deb cache (hardlinks; copies across file systems). --skip=download/empty keeps
# the debs in the chroot so the ones apt had to fetch can be counted below; the layout step
# empties /var anyway.
seed="mkdir -p \"\$1/var/cache/apt/archives\" && for f in $debs/*.deb; do ln \"\$f\" \"\$1/var/cache/apt/archives/\" 2>/dev/null || cp \"\$f\" \"\$1/var/cache/apt/archives/\"; done"
# Every output line gets a timestamp, to split the mmdebstrap phase afterwards.
failed() { tail -n 30 "$log" >&2; say "$1 failed; log: $log"; exit 1; }
LC_ALL=C.UTF-8 mmdebstrap --variant=minbase --mode=root --format=directory \
    --skip=download/empty \
    --include="$include" \
    --setup-hook="$seed" \
    "$suite" "$rootfs" "$sources" 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done > "$log" ||
    failed mmdebstrap
record rootfs "$start"
# mmdebstrap's own steps (its "I: ..." lines), for the report.
awk -v end="$(now)" '
    / I: (running apt-get update|downloading packages|extracting archives|installing essential|installing remaining|cleaning package lists)/ {
        if (name != "") printf "rootfs.%s %.2f\n", name, $1 - t
        name = $3; t = $1
        if ($3 == "running") name = "apt-update"
        if ($3 == "downloading") name = "download"
        if ($3 == "extracting") name = "extract"
        if ($3 == "installing" && $4 == "essential") name = "install-essential"
        if ($3 == "installing" && $4 == "remaining") name = "install-remaining"
        if ($3 == "cleaning") name = "cleanup"
    }
    END { if (name != "") printf "rootfs.%s %.2f\n", name, end - t }
' "$log" >> "$times"
downloaded=0
for f in "$rootfs"/var/cache/apt/archives/*.deb; do
    [ -e "$f" ] || continue
    [ -e "$debs/$(basename "$f")" ] || downloaded=$((downloaded + 1))
done
echo "downloaded_debs $downloaded" >> "$times"
say "rootfs: $downloaded .debs downloaded (0 expected with a warm cache)"

kvers=$(ls "$rootfs/usr/lib/modules")
[ "$(echo "$kvers" | wc -l)" = 1 ] || { say "expected one kernel, found: $kvers"; exit 1; }
kver=$kvers
# The throwaway initramfs the kernel's postinst hook built (nothing diverted dracut).
if [ -f "$rootfs/boot/initrd.img-$kver" ]; then
    echo "hook_initramfs_bytes $(stat -c %s "$rootfs/boot/initrd.img-$kver")" >> "$times"
else
    echo "hook_initramfs_bytes 0" >> "$times"
fi

# --- initramfs: dracut, default compression --------------------------------------------------
say "initramfs: dracut for $kver"
start=$(now)
bwrap --bind "$rootfs" / --proc /proc --dev /dev --tmpfs /tmp --tmpfs /run \
    --unshare-pid --unshare-ipc --unshare-uts --unshare-net --die-with-parent --chdir / \
    --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --setenv LC_ALL C.UTF-8 -- \
    dracut --no-hostonly --add ostree --reproducible --force \
    "/usr/lib/modules/$kver/initramfs.img" "$kver" >> "$log" 2>&1 || failed dracut
record initramfs "$start"
img=$rootfs/usr/lib/modules/$kver/initramfs.img
case $(head -c 4 "$img" | od -An -tx1 | tr -d ' \n') in
    1f8b*) comp=gzip ;;
    28b52ffd) comp=zstd ;;
    fd377a58) comp=xz ;;
    30373037) comp=cpio-early+? ;;
    *) comp=unknown ;;
esac
echo "initramfs_bytes $(stat -c %s "$img")" >> "$times"
echo "initramfs_compression $comp" >> "$times"

# --- layout: the OSTree conversion ----------------------------------------------------------
say "layout: converting to the OSTree layout"
start=$(now)
cd "$rootfs"
# Kernel next to its initramfs; /boot empty, the /vmlinuz and /initrd.img links gone.
mv "boot/vmlinuz-$kver" "usr/lib/modules/$kver/vmlinuz"
[ -e "boot/config-$kver" ] && mv "boot/config-$kver" "usr/lib/modules/$kver/config"
find boot -mindepth 1 -delete
rm -f vmlinuz vmlinuz.old initrd.img initrd.img.old
# The dpkg database under /usr.
mkdir -p usr/share/dpkg
mv var/lib/dpkg usr/share/dpkg/database
# /usr/local lives in /var/usrlocal.
rm -rf usr/local
ln -s ../var/usrlocal usr/local
# /var becomes tmpfiles.d lines (directories and links, with the tree's own user names).
mkdir -p usr/lib/tmpfiles.d
{
    echo "# /var of the baseline compose, recreated at boot."
    for d in home mnt opt srv usrlocal lib/docker lib/containerd; do
        [ -e "var/$d" ] || echo "d /var/$d 0755 root root - -"
    done
    echo "d /var/roothome 0700 root root - -"
    echo "L /var/lib/dpkg - - - - /usr/share/dpkg/database"
    chroot . find /var -mindepth 1 \
        \( -type d -printf 'd %p %#m %u %g - -\n' \) -o \( -type l -printf 'L %p - - - - %l\n' \)
} > usr/lib/tmpfiles.d/baseline-var.conf
find var -mindepth 1 -delete
# /etc becomes /usr/etc (no machine id, hostname or resolver of the build host).
: > etc/machine-id
rm -f etc/hostname etc/resolv.conf
mv etc usr/etc
# Toplevel links and the sysroot.
for l in home:var/home root:var/roothome opt:var/opt srv:var/srv mnt:var/mnt media:run/media ostree:sysroot/ostree; do
    rm -rf "${l%%:*}"
    ln -s "${l#*:}" "${l%%:*}"
done
mkdir -p sysroot
# Empty API file systems.
for d in dev proc sys run tmp; do
    mkdir -p "$d"
    find "$d" -mindepth 1 -delete
done
chmod 0555 proc sys
chmod 1777 tmp
cd - > /dev/null
record layout "$start"

# --- commit: ostree commit into a fresh archive repository ----------------------------------
say "commit: ostree commit"
start=$(now)
ostree init --repo="$repo" --mode=archive
ostree commit --repo="$repo" --branch=bench/baseline --tree=dir="$rootfs" \
    --subject="baseline $suite" >> "$log" 2>&1 || failed "ostree commit"
ostree summary --repo="$repo" -u
record commit "$start"

record total "$total_start"
