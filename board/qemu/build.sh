#!/bin/bash
# Builds the emulated x86 board's pieces once, outside the repository (cached, rebuilt when
# absent): a Debian 12 rootfs with Debian's kernel, the gpio-sim and vicodec modules (not
# shipped by Debian) built from Debian's kernel source, and a tiny initramfs that mounts the rootfs
# over 9p with a tmpfs overlay so every boot starts clean.
#   board/qemu/build.sh            → prints the cache directory
set -euo pipefail
CACHE=${VIDEOPHONE_BOARD_CACHE:-$HOME/.cache/videophone-board}
ROOTFS=$CACHE/rootfs
mkdir -p "$CACHE"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
. "$(dirname "$0")/common.sh"
board_trap_errors

"$(dirname "$0")/../../toolchain/apt-ensure.sh" qemu-system-x86 qemu-utils debootstrap busybox-static cpio kmod gcc make xz-utils bc flex bison libelf-dev libgpiod-dev python3-pip

# The mirror this machine's apt already uses (never a hard-coded host).
MIRROR=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) | grep -oE '^(URIs:|deb) *https?://[^ ]+' | head -1 | sed -E 's/^(URIs:|deb) *//' || true)
[ -n "$MIRROR" ] || { echo "board: no Debian mirror found in apt's sources" >&2; exit 1; }

if [ ! -e "$ROOTFS/.complete" ]; then
    board_begin "rootfs" "debootstrap into $ROOTFS (about a minute)"
    $SUDO rm -rf "$ROOTFS"
    $SUDO debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,udev,kmod,v4l-utils,alsa-utils,gpiod,libgpiod2,libv4l-0,libasound2,libx264-164,libopus0,libsrtp2-1,libssl3,libwebrtc-audio-processing1,libmosquitto1,libavcodec59,libdrm2,iproute2,procps \
        bookworm "$ROOTFS" "$MIRROR" >/dev/null
    $SUDO chroot "$ROOTFS" /bin/sh -c "INITRD=No DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null"
    $SUDO touch "$ROOTFS/.complete"
fi
# Runtime libraries the firmware gained after a cached rootfs was built: added in place.
for pkg in libwebrtc-audio-processing1 libmosquitto1 libavcodec59 libdrm2; do
    if ! $SUDO chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo "board: adding $pkg to the rootfs" >&2
        $SUDO chroot "$ROOTFS" /bin/sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkg >/dev/null" \
            || { $SUDO chroot "$ROOTFS" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkg >/dev/null"; }
    fi
done
KVER=$(ls "$ROOTFS/lib/modules" | sort | tail -1)

board_scenario_unit "$ROOTFS" ttyS0

# gpio-sim and vicodec from Debian's own kernel source (common.sh), same version.
if [ ! -e "$ROOTFS/lib/modules/$KVER/updates/gpio-sim.ko" ] || [ ! -e "$ROOTFS/lib/modules/$KVER/updates/vicodec.ko" ]; then
    "$(dirname "$0")/../../toolchain/apt-ensure.sh" "linux-headers-$KVER" linux-source-6.1
    board_extra_modules "$CACHE" "$ROOTFS" "$KVER" /usr/src/linux-source-6.1.tar.xz "/usr/src/linux-headers-$KVER"
fi

# (initrd-v2: the overlay's tmpfs may use most of the RAM; a cached older image is left for
# older trees.)
board_initrd "$ROOTFS" "$KVER" /bin/busybox "$CACHE/initrd-v2.img" virtio_pci 9pnet_virtio 9p overlay
echo "$CACHE"
