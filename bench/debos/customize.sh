#!/bin/sh
# customize.sh (debos run action, on the host): the treefiles' add-files and postprocess
# script, applied to $ROOTDIR. Sources are treefiles/files of this checkout.
set -eu
files=$RECIPEDIR/../../treefiles/files
while read -r src dest; do
    mkdir -p "$ROOTDIR${dest%/*}"
    cp "$files/$src" "$ROOTDIR$dest"
done <<LIST
10-dhcp-ethernet.network /usr/lib/systemd/network/89-slipway-dhcp.network
slipway-ssh-host-keys.service /usr/lib/systemd/system/slipway-ssh-host-keys.service
docker-daemon.json /etc/docker/daemon.json
kubernetes-modules.conf /etc/modules-load.d/kubernetes.conf
kubernetes-sysctl.conf /etc/sysctl.d/90-kubernetes.conf
LIST
# base.json's postprocess: host keys made at build time would be shared by every machine.
rm -f "$ROOTDIR"/etc/ssh/ssh_host_*
# What apt-setup.sh added for the build only.
rm -f "$ROOTDIR/etc/apt/preferences.d/bench-exclude.pref" "$ROOTDIR/etc/apt/apt.conf.d/99bench"
