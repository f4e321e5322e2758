#!/bin/sh
# slipway live root (run by slipway-live-root.service in the commit's own initramfs).
# /slipway/root.squashfs (the commit's tree, as it is) and /slipway/live.squashfs (the live
# layer: /etc, the installer) arrived with rootfs.img, the second initrd; they stay in RAM,
# and the loop devices keep them after switch-root empties the initramfs. The commit's tree
# stays mounted at /run/slipway/lower (switch-root moves /run): the installer imports it.
set -eu
for img in /slipway/root.squashfs /slipway/live.squashfs; do
    if [ ! -f "$img" ]; then
        echo "slipway: $img is missing: the boot loader must load rootfs.img after initramfs.img" >&2
        exit 1
    fi
done
modprobe -a loop squashfs overlay 2>/dev/null || :
mkdir -p /run/slipway/lower /run/slipway/live /run/slipway/rw
mount -t squashfs -o ro,loop /slipway/root.squashfs /run/slipway/lower
mount -t squashfs -o ro,loop /slipway/live.squashfs /run/slipway/live
mount -t tmpfs -o mode=0755 slipway-live /run/slipway/rw
mkdir -p /run/slipway/rw/upper /run/slipway/rw/work
echo "slipway: live root mounted from /slipway/live.squashfs over /slipway/root.squashfs" >&2
