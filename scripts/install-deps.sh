#!/usr/bin/env bash
# Install what slipway needs on a Debian 12 machine (as root), then check that every tool the
# build and the tests use is really there, and fail with the reason if one is not.
#
#   scripts/install-deps.sh build   what `make run` needs: build slipway, compose, image
#   scripts/install-deps.sh test    that plus the test suite's QEMU, OVMF, iPXE, Vagrant, scapy...
#   scripts/install-deps.sh bench   that plus debos, the benchmark's peer (without its
#                                   Recommends: systemd-resolved would replace /etc/resolv.conf),
#                                   nginx and jq for the PXE step (bench/run.sh pxe)
#
# A machine may come with newer versions of some tools than Debian 12 ships (qemu-utils from a
# backport, for one). Debian 12's qemu-system-x86 cannot live beside a newer qemu-utils
# (qemu-utils >= 8 Breaks qemu-system-common << 8), and apt's answer to installing it is to
# remove qemu-utils, and with it qemu-img. So everything is installed in one apt transaction,
# with qemu-utils asked for at the version that belongs to the qemu-system-x86 being installed.
set -euo pipefail

mode=${1:-build}
case "$mode" in build|test|bench) ;; *) echo "usage: $0 build|test|bench" >&2; exit 2 ;; esac

# program:package, for what `make run` uses.
build_tools=(
    cc:build-essential pkg-config:pkg-config ostree:ostree mmdebstrap:mmdebstrap
    bwrap:bubblewrap unshare:util-linux apt-get:apt dpkg:dpkg gpg:gnupg curl:curl
    sfdisk:fdisk mke2fs:e2fsprogs chattr:e2fsprogs mkfs.fat:dosfstools mcopy:mtools
    mmd:mtools mdir:mtools grub-mkimage:grub-common grub-script-check:grub-common
    qemu-img:qemu-utils tar:tar zstd:zstd strip:binutils grub-editenv:grub-common
    mksquashfs:squashfs-tools lsinitrd:dracut-core cpio:cpio dpkg-deb:dpkg dpkg-query:dpkg
    apt-cache:apt
)
# `pxe build` takes iPXE, PXELINUX and ldlinux.c32 out of Debian's ipxe, pxelinux and
# syslinux-common with `apt-get download` and `dpkg-deb -x`: they are never installed here
# (ipxe's maintainer script would edit this machine's GRUB menu).
build_files=(
    /usr/lib/grub/i386-pc/moddep.lst:grub-pc-bin
    /usr/lib/grub/x86_64-efi/moddep.lst:grub-efi-amd64-bin
)
# ...and what the tests add.
test_tools=(
    qemu-system-x86_64:qemu-system-x86 ssh:openssh-client ssh-keygen:openssh-client
    lsinitrd:dracut-core cpio:cpio ip:iproute2 ps:procps vagrant:vagrant
    libvirtd:libvirt-daemon-system virsh:libvirt-clients dnsmasq:dnsmasq-base
    iptables:iptables nc:netcat-openbsd python3:python3 debugfs:e2fsprogs losetup:mount dpkg-deb:dpkg pkill:procps
    atftp:atftp curl:curl unsquashfs:squashfs-tools setcap:libcap2-bin
)
test_files=(
    /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/share/OVMF/OVMF_VARS_4M.fd:ovmf
    /usr/share/OVMF/OVMF_CODE_4M.secboot.fd:ovmf /usr/share/OVMF/OVMF_VARS_4M.ms.fd:ovmf
    /usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd:ovmf
    /usr/share/seabios/bios-256k.bin:seabios /usr/lib/ipxe/qemu/efi-virtio.rom:ipxe-qemu
    /usr/lib/python3/dist-packages/scapy/layers/dhcp.py:python3-scapy
)

# ...and what the benchmark adds: debos (compose peer), nginx (the PXE step's HTTP baseline: the
# script starts its own with its own configuration; the package's service is kept from
# starting like the daemons above), jq (reads the DHCP load generator's JSON). The PXE step's
# other baselines and clients (dnsmasq, atftp, curl, ip) are test tools already.
bench_tools=(debos:debos nginx:nginx jq:jq)

packages_of() { local e; for e in "$@"; do echo "${e#*:}"; done; }

mapfile -t pkgs < <(packages_of "${build_tools[@]}" "${build_files[@]}" | sort -u)
pkgs+=(libglib2.0-dev libostree-dev ca-certificates)
if [ "$mode" != build ]; then
    mapfile -t -O "${#pkgs[@]}" pkgs < <(packages_of "${test_tools[@]}" "${test_files[@]}" | sort -u)
    pkgs+=(vagrant-libvirt)
fi
if [ "$mode" = bench ]; then
    mapfile -t -O "${#pkgs[@]}" pkgs < <(packages_of "${bench_tools[@]}" | sort -u)
    test_tools+=("${bench_tools[@]}")
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

extra=()
if [ "$mode" != build ]; then
    want=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    have=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [ -n "$want" ] && [ "$have" != "$want" ]; then
        # The qemu-utils built from the same source as that qemu-system-x86.
        match=$(apt-cache madison qemu-utils | awk -v v="$want" '$3 == v {print $3; exit}')
        if [ -n "$match" ]; then
            if [ -n "$have" ] && dpkg --compare-versions "$have" gt "$match"; then
                echo "install-deps: qemu-utils $have is newer than Debian 12's qemu-system-x86 $want allows; installing qemu-utils $match beside it so qemu-img stays" >&2
            fi
            pkgs=("${pkgs[@]/#qemu-utils/qemu-utils=$match}")
            extra+=(--allow-downgrades)
        fi
    fi
fi

# Daemons in the test and bench packages (libvirtd, dnsmasq, nginx) must not start on this machine: the tests
# start their own, inside network namespaces. policy-rc.d keeps them stopped while installing.
had_policy=1
if [ ! -e /usr/sbin/policy-rc.d ]; then
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
fi
rc=0
apt-get install -y -qq --no-install-recommends "${extra[@]}" "${pkgs[@]}" || rc=$?
[ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
[ "$rc" = 0 ] || { echo "install-deps: apt-get install failed (exit $rc)" >&2; exit "$rc"; }

# Check each tool, after the whole transaction: a later package must not have removed an
# earlier one's program.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
missing=()
check_tool() { command -v "${1%%:*}" >/dev/null 2>&1 || missing+=("${1%%:*} (package ${1#*:})"); }
check_file() { [ -e "${1%%:*}" ] || missing+=("${1%%:*} (package ${1#*:})"); }
for t in "${build_tools[@]}"; do check_tool "$t"; done
for f in "${build_files[@]}"; do check_file "$f"; done
if [ "$mode" != build ]; then
    for t in "${test_tools[@]}"; do check_tool "$t"; done
    for f in "${test_files[@]}"; do check_file "$f"; done
fi
pkg-config --exists ostree-1 || missing+=("ostree-1.pc (package libostree-dev)")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: after installing, these are still missing:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "install-deps: apt's view of the QEMU packages:" >&2
    dpkg -l 'qemu*' 2>/dev/null | awk '/^[a-z][a-z] / {print "  " $1, $2, $3}' >&2
    exit 1
fi
qemu-img --version | head -n1 >&2
[ "$mode" = build ] || qemu-system-x86_64 --version | head -n1 >&2
echo "install-deps: every tool for '$mode' is in place" >&2
