#!/bin/sh
# slipway live root (run by slipway-live-root.service in the commit's own initramfs).
# /slipway/root.squashfs arrived with rootfs.img, the second initrd; it stays in RAM, and
# the loop device keeps it after switch-root empties the initramfs.
set -eu
img=/slipway/root.squashfs
if [ ! -f "$img" ]; then
    echo "slipway: $img is missing: the boot loader must load rootfs.img after initramfs.img" >&2
    exit 1
fi
modprobe -a loop squashfs overlay 2>/dev/null || :
mkdir -p /run/slipway/lower /run/slipway/rw
mount -t squashfs -o ro,loop "$img" /run/slipway/lower
mount -t tmpfs -o mode=0755 slipway-live /run/slipway/rw
mkdir -p /run/slipway/rw/upper /run/slipway/rw/work
echo "slipway: live root mounted from $img" >&2
