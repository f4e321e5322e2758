#!/bin/sh
# apt-setup.sh SUITE UPDATES MIRROR [SECURITY] (debos run action, in the chroot): after
# debootstrap, which knows one suite of one mirror, give apt the sources slipway resolves
# against (SUITE, SUITE-updates unless UPDATES is "no", SUITE-security from SECURITY when given),
# apply the treefile's exclude-packages as a negative pin, divert dracut while packages install
# (as slipway does, so the kernel's hook builds no initramfs that is thrown away), and upgrade
# what debootstrap took from SUITE to the versions slipway installs.
set -eu
suite=$1 updates=$2 mirror=$3 security=${4:-}
{
    echo "deb $mirror $suite main"
    [ "$updates" = no ] || echo "deb $mirror $suite-updates main"
    [ -z "$security" ] || echo "deb $security $suite-security main"
} > /etc/apt/sources.list
mkdir -p /etc/apt/preferences.d /etc/apt/apt.conf.d
# exclude-packages (base.json): initramfs-tools; dracut provides linux-initramfs-tool.
printf 'Package: initramfs-tools\nPin: release *\nPin-Priority: -1\n' > /etc/apt/preferences.d/bench-exclude.pref
# slipway's apt options: no recommends, no translations.
printf 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' > /etc/apt/apt.conf.d/99bench
dpkg-divert --quiet --local --rename --divert /usr/bin/dracut.bench-diverted --add /usr/bin/dracut
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get -y dist-upgrade
