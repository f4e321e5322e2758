#!/bin/sh
# slipway live root (run by slipway-live-root.service in the commit's own initramfs).
# /slipway/root.squashfs (the commit's tree, as it is) and /slipway/live.squashfs (the live
# layer: /etc, the installer) arrived with rootfs.img, the second initrd (or, when the boot
# loader loaded netroot.img instead, net-root.sh fetches rootfs.img over HTTP). They are moved
# into a tmpfs of their size at /run/slipway/images (switch-root moves /run, and empties
# the initramfs), so they stay in RAM once, as files: the installer unpacks root.squashfs
# with unsquashfs (reading the loop device instead took about 1.8 times as long under TCG).
# The commit's tree stays mounted at /run/slipway/lower.
set -eu
modprobe -a loop squashfs overlay 2>/dev/null || :
mkdir -p /run/slipway/images /run/slipway/lower /run/slipway/live /run/slipway/rw
if [ ! -f /slipway/root.squashfs ] && [ -f /usr/lib/slipway/net-root.sh ]; then
    # netroot.img instead of rootfs.img: the images come over HTTP into the tmpfs.
    /usr/lib/slipway/busybox sh /usr/lib/slipway/net-root.sh
else
    for img in /slipway/root.squashfs /slipway/live.squashfs; do
        if [ ! -f "$img" ]; then
            echo "slipway: $img is missing: the boot loader must load rootfs.img (or netroot.img) after initramfs.img" >&2
            exit 1
        fi
    done
    bytes=$(( $(stat -c %s /slipway/root.squashfs) + $(stat -c %s /slipway/live.squashfs) + 4194304 ))
    mount -t tmpfs -o "mode=0755,size=$bytes" slipway-images /run/slipway/images
    mv /slipway/root.squashfs /slipway/live.squashfs /run/slipway/images/
fi
mount -t squashfs -o ro,loop /run/slipway/images/root.squashfs /run/slipway/lower
mount -t squashfs -o ro,loop /run/slipway/images/live.squashfs /run/slipway/live
mount -t tmpfs -o mode=0755 slipway-live /run/slipway/rw
mkdir -p /run/slipway/rw/upper /run/slipway/rw/work
echo "slipway: live root mounted from /run/slipway/images/live.squashfs over /run/slipway/images/root.squashfs" >&2
