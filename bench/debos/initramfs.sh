#!/bin/sh
# initramfs.sh (debos run action, in the chroot): the generic OSTree initramfs, as slipway
# builds it: dracut --no-hostonly --add ostree --reproducible, zstd -9 -T0, into
# /usr/lib/modules/KVER/initramfs.img.
set -eu
kver=$(ls /usr/lib/modules)
if [ "$(echo "$kver" | wc -l)" != 1 ]; then
    echo "initramfs.sh: expected one kernel in /usr/lib/modules, found: $kver" >&2
    exit 1
fi
dracut --force --no-hostonly --add ostree --reproducible --compress "zstd -9 -T0" \
    "/usr/lib/modules/$kver/initramfs.img" "$kver"
ls -l "/usr/lib/modules/$kver/initramfs.img"
