#!/bin/bash
# Builds the emulated arm64 board's pieces once, outside the repository (cached in
# ~/.cache/videophone-board-arm64, each rebuilt when absent):
#   rootfs     Debian 13 (trixie) arm64 with systemd, Debian's arm64 kernel (linux-image-arm64)
#              and the firmware's runtime libraries, by debootstrap from the Debian mirror the
#              arm64 sysroot comes from (toolchain/cross/common.sh); maintainer scripts run
#              under qemu-user (binfmt_misc)
#   kheaders   that kernel's headers and kbuild, and Debian's kernel source (linux-source-6.12)
#   modules    gpio-sim and vicodec cross-built with gcc-aarch64-linux-gnu from that source
#   initrd     busybox (arm64), virtio/9p/overlay: mounts the rootfs over 9p with a tmpfs overlay
#   board/qemu/build-arm64.sh [DEB]    prints the cache directory. DEB: an arm64 videophone
#                                      package whose Depends are added to the rootfs if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/common.sh"
. "$repo/toolchain/cross/common.sh"     # vp_mirror: the arm64 sysroot's Debian mirror
CACHE=${VIDEOPHONE_BOARD_ARM64_CACHE:-$HOME/.cache/videophone-board-arm64}
ROOTFS=$CACHE/rootfs
SUITE=trixie
KSRC=linux-source-6.12
mkdir -p "$CACHE"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
board_trap_errors

board_begin "host tools" "QEMU (system and user), debootstrap, the arm64 cross compiler"
"$repo/toolchain/apt-ensure.sh" qemu-system-arm qemu-user-static binfmt-support debootstrap debian-archive-keyring \
    gcc-aarch64-linux-gnu make bc flex bison cpio xz-utils kmod \
    || board_fail "apt could not install the host tools"
# Maintainer scripts and kbuild's helpers are arm64 programs: binfmt_misc runs them.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    $SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || board_fail "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64)"
MIRROR=$(vp_mirror) || board_fail "no Debian mirror in apt's sources; set VP_DEBIAN_MIRROR"

# Runtime libraries of the firmware (Debian 13 names); a package given on the command line
# adds whatever else its Depends name.
PACKAGES="systemd,systemd-sysv,udev,kmod,v4l-utils,alsa-utils,gpiod,iproute2,procps,busybox-static,libssl3t64,libasound2t64,libgpiod3,libx264-164,libopus0,libsrtp2-1,libwebrtc-audio-processing-1-3,libmosquitto1,libavcodec61,libdrm2,libv4l-0t64"
in_root() { $SUDO chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

if [ ! -e "$ROOTFS/.complete" ]; then
    board_begin "rootfs" "debootstrap $SUITE arm64 into $ROOTFS from $MIRROR (under qemu-user: several minutes)"
    $SUDO rm -rf "$ROOTFS"
    $SUDO debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" \
        "$SUITE" "$ROOTFS" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; board_fail "debootstrap $SUITE arm64 (log: $CACHE/debootstrap.log)"; }
    board_begin "kernel" "linux-image-arm64 into the rootfs"
    # INITRD=No: the board boots with its own small initramfs (below), not Debian's.
    in_root /bin/sh -c "INITRD=No apt-get install -y -qq --no-install-recommends linux-image-arm64" > "$CACHE/kernel.log" 2>&1 \
        || { tail -n 20 "$CACHE/kernel.log" >&2; board_fail "apt-get install linux-image-arm64 in the rootfs (log: $CACHE/kernel.log)"; }
    $SUDO touch "$ROOTFS/.complete"
fi
KVER=$(ls "$ROOTFS/lib/modules" | sort | tail -1)
[ -n "$KVER" ] && [ -e "$ROOTFS/boot/vmlinuz-$KVER" ] || board_fail "no kernel in $ROOTFS/boot"

# The package's runtime dependencies, when the rootfs predates one of them: added in place.
if [ -n "${1:-}" ]; then
    board_begin "package dependencies" "Depends of $(basename "$1")"
    deps=$(dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/ //g' | grep -v '^$')
    missing=""
    for pkg in $deps; do
        in_root dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "board: adding$missing to the arm64 rootfs" >&2
        in_root /bin/sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing" > "$CACHE/deps.log" 2>&1 \
            || { tail -n 20 "$CACHE/deps.log" >&2; board_fail "apt-get install$missing in the rootfs (log: $CACHE/deps.log)"; }
    fi
fi

board_scenario_unit "$ROOTFS" ttyAMA0

# The kernel's headers and kbuild and Debian's kernel source, unpacked beside the rootfs
# (not installed in it: the board needs no compiler).
KH=$CACHE/kheaders
if [ ! -e "$KH/.complete-$KVER" ]; then
    board_begin "kernel headers" "linux-headers-$KVER, its kbuild and $KSRC"
    common=$(in_root apt-cache depends "linux-headers-$KVER" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')
    kbuild=$(in_root apt-cache depends "linux-headers-$KVER" | awk '/Depends: linux-kbuild-/ {print $2; exit}')
    [ -n "$common" ] && [ -n "$kbuild" ] || board_fail "apt in the rootfs does not know linux-headers-$KVER's -common and kbuild packages"
    $SUDO rm -rf "$KH" && mkdir -p "$KH/debs"
    $SUDO mkdir -p "$ROOTFS/tmp/kdebs"
    in_root /bin/sh -c "cd /tmp/kdebs && apt-get download linux-headers-$KVER $common $kbuild $KSRC" > "$CACHE/kheaders.log" 2>&1 \
        || { tail -n 20 "$CACHE/kheaders.log" >&2; board_fail "apt-get download of the kernel headers and source (log: $CACHE/kheaders.log)"; }
    $SUDO mv "$ROOTFS"/tmp/kdebs/*.deb "$KH/debs/" && $SUDO rm -rf "$ROOTFS/tmp/kdebs"
    for deb in "$KH"/debs/*.deb; do dpkg-deb -x "$deb" "$KH" || board_fail "could not unpack $deb"; done
    # Debian's headers name their siblings by absolute path (/usr/src, /usr/lib/linux-kbuild-*):
    # point those at this copy.
    grep -rlE '/usr/(src|lib)/linux-' "$KH/usr/src/linux-headers-$KVER" --include=Makefile --include='.kernelvariables' 2>/dev/null \
        | xargs -r sed -i -E "s#(^|[ =:])/usr/(src|lib)/linux-#\1$KH/usr/\2/linux-#g"
    find "$KH/usr" -type l -lname '/*' | while read -r link; do
        ln -sfn "$KH$(readlink "$link")" "$link"
    done
    touch "$KH/.complete-$KVER"
fi
TARBALL=$(ls "$KH"/usr/src/$KSRC.tar.* 2>/dev/null | head -1)
[ -n "$TARBALL" ] || board_fail "no $KSRC tarball in $KH/usr/src"

# kbuild's own helpers (fixdep, modpost) are arm64 programs from linux-kbuild: qemu-user runs
# them with the rootfs's libc. The compiler is the host's cross gcc (Debian 12: gcc 12; the
# kernel was built with gcc 14), so two settings that name gcc 14 features are turned off:
# -fmin-function-alignment (gcc 12 aligns with -falign-functions instead) and BTF for the
# modules (it needs pahole; the modules load without it).
export QEMU_LD_PREFIX=$ROOTFS
board_extra_modules "$CACHE" "$ROOTFS" "$KVER" "$TARBALL" "$KH/usr/src/linux-headers-$KVER" \
    ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc \
    CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT= CONFIG_DEBUG_INFO_BTF_MODULES=

board_initrd "$ROOTFS" "$KVER" "$ROOTFS/bin/busybox" "$CACHE/initrd.img" virtio_pci virtio_mmio 9pnet_virtio 9p overlay
echo "$CACHE"
