#!/bin/sh
# seed-debs.sh [DIR] (debos run action, on the host): hardlink DIR/*.deb (copies across file
# systems) into the chroot's apt cache, $ROOTDIR/var/cache/apt/archives. debootstrap and apt
# use a seeded .deb when its checksum matches the index and download it otherwise. No DIR:
# nothing is seeded. The debootstrap and apt actions end with `apt-get clean`, which only
# unlinks the chroot's links.
set -eu
if [ -z "${1:-}" ]; then
    echo "seed-debs.sh: no .deb directory given: nothing seeded"
    exit 0
fi
dest=$ROOTDIR/var/cache/apt/archives
mkdir -p "$dest/partial"
n=0
for f in "$1"/*.deb; do
    [ -e "$f" ] || continue
    b=${f##*/}
    [ -e "$dest/$b" ] && continue
    ln "$f" "$dest/$b" 2>/dev/null || cp "$f" "$dest/$b"
    n=$((n + 1))
done
echo "seed-debs.sh: $n .debs seeded from $1"
