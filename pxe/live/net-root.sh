# slipway live root over HTTP (run by live-root.sh with the busybox in netroot.img, when the
# boot loader loaded netroot.img instead of rootfs.img). The boot loader then sent only the
# kernel, the initramfs and this small initrd; the live root's two squashfs images come by
# HTTP from `slipway pxe serve`, which is much faster than a boot loader's TFTP:
#   slipway.rootfs=URL    rootfs.img of this ref (the same file iPXE loads)
#   slipway.netif=MAC     the interface to ask DHCP on (else every interface, in turn)
# The download must have the SHA-256 and size in /usr/lib/slipway/rootfs.img.sha256, which
# came with netroot.img from the boot loader: a server cannot send another live root. The
# squashfs images are taken out of it into the tmpfs at /run/slipway/images, where
# live-root.sh expects them. The interface is left down and without an address for the live
# system's own network set-up.
set -eu
set -o pipefail
bb=/usr/lib/slipway/busybox
say() { echo "slipway: $*" >&2; }
fail() { say "$*"; exit 1; }
arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
    done
}
url=$(arg slipway.rootfs)
mac=$(arg slipway.netif | $bb tr A-F a-f)
[ -n "$url" ] || fail "netroot.img was loaded but the kernel command line has no slipway.rootfs=URL"
read -r want size < /usr/lib/slipway/rootfs.img.sha256

# The network drivers of the devices present (netroot.img carries the commit's NIC modules);
# a device behind a bus driver (virtio) appears once that driver is in, hence the rounds.
ifaces() {
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        [ -e "$d/device" ] || continue
        if [ -n "$mac" ] && [ "$($bb cat "$d/address")" != "$mac" ]; then continue; fi
        echo "$n"
    done
}
i=0
found=
while [ $i -lt 60 ]; do
    modprobe -q -a $($bb cat /sys/bus/*/devices/*/modalias 2>/dev/null | $bb sort -u) 2>/dev/null || :
    found=$(ifaces)
    [ -n "$found" ] && break
    $bb sleep 0.5
    i=$((i + 1))
done
[ -n "$found" ] || fail "no network interface ${mac:+with the address $mac }appeared in 30 s (is its driver in the commit's kernel?)"
# udev may still rename the interface: let it finish first.
udevadm settle -t 10 2>/dev/null || :
found=$(ifaces)

images=/run/slipway/images
$bb mount -t tmpfs -o "mode=0755,size=$((size * 2 + 8388608))" slipway-images "$images"
img="$images/rootfs.img"
got=
for n in $found; do
    $bb ip link set "$n" up
    if ! $bb udhcpc -i "$n" -f -q -n -t 8 -T 2 -s /usr/lib/slipway/udhcpc.script >&2; then
        say "no DHCP answer on $n"
        $bb ip link set "$n" down
        continue
    fi
    for try in 1 2 3; do
        say "fetching the live root from $url on $n (try $try)"
        if $bb wget -q -O "$img" "$url"; then
            got=$n
            break
        fi
        $bb sleep 2
    done
    $bb ip addr flush dev "$n"
    $bb ip link set "$n" down
    [ -n "$got" ] && break
done
[ -n "$got" ] || fail "could not fetch $url"
have=$($bb stat -c %s "$img")
[ "$have" = "$size" ] || fail "$url is $have bytes, not the $size this netroot.img was built with"
sum=$($bb sha256sum "$img")
[ "${sum%% *}" = "$want" ] || fail "$url has SHA-256 ${sum%% *}, not the $want this netroot.img was built with"
cd "$images"
$bb cpio -i -d -m slipway/root.squashfs slipway/live.squashfs < "$img"
$bb rm -f "$img"
$bb mv slipway/root.squashfs slipway/live.squashfs .
$bb rmdir slipway
say "live root fetched over HTTP ($size bytes, SHA-256 checked)"
