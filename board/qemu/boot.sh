#!/bin/bash
# Boots an emulated board (software emulation: this machine's KVM cannot run Debian's
# kernel) and runs a scenario script inside it under systemd; prints the scenario's log
# and exits with its status.
#   [BOARD_ARCH=amd64|arm64] [BOARD_TAP=tapN] [BOARD_DEB=PKG] board/qemu/boot.sh SCENARIO.sh [SHARED_DIR]
# amd64 (default): Debian 12, qemu-system-x86_64 -M pc, two vCPUs (build.sh).
# arm64: Debian 13, qemu-system-aarch64 -M virt -cpu cortex-a72, two vCPUs (build-arm64.sh;
#        BOARD_DEB: the arm64 package whose dependencies the rootfs must hold).
set -euo pipefail
SCENARIO=$1
HERE=$(dirname "$0")
SHARE=${2:-$(mktemp -d)}
mkdir -p "$SHARE"
# BOARD_TAP: a tap device (in the caller's network namespace) as the board's network.
NET=()
[ -n "${BOARD_TAP:-}" ] && NET=(-netdev "tap,id=n0,ifname=$BOARD_TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0)
case "${BOARD_ARCH:-amd64}" in
amd64)
    CACHE=$("$HERE/build.sh")
    INITRD=$CACHE/initrd-v2.img
    BIOS=()
    [ -e /usr/share/qemu/qboot.rom ] && BIOS=(-bios /usr/share/qemu/qboot.rom)
    # A screen Debian's kernel drives through DRM (bochs), 640x480, and QEMU's monitor (QMP) on a
    # socket in the share, so the host can take screendumps (board/qemu/board_screens.py).
    # Two vCPUs, as on arm64: on one, the daemon's SCHED_FIFO capture thread (which runs the
    # audio processing stage) starved its transport thread, and the peer saw consent fail.
    MACHINE=(qemu-system-x86_64 -machine pc "${BIOS[@]}" -m 512 -smp 2
             -device bochs-display,xres=640,yres=480 -qmp "unix:$SHARE/qmp.sock,server=on,wait=off")
    CONSOLE=ttyS0 ;;
arm64)
    CACHE=$("$HERE/build-arm64.sh" ${BOARD_DEB:+"$BOARD_DEB"})
    INITRD=$CACHE/initrd.img
    # Two vCPUs: TCG runs them on two host threads, and one alone cannot keep a call's
    # encoder, sound and transport threads on time.
    MACHINE=(qemu-system-aarch64 -machine virt -cpu cortex-a72 -m 1024 -smp 2)
    CONSOLE=ttyAMA0 ;;
*) echo "board: unknown BOARD_ARCH ${BOARD_ARCH} (amd64 or arm64)" >&2; exit 2 ;;
esac
ROOTFS=$CACHE/rootfs
KVER=$(ls "$ROOTFS/lib/modules" | sort | tail -1)
cp "$SCENARIO" "$SHARE/scenario.sh"
rm -f "$SHARE/exit-status" "$SHARE/scenario.log"
timeout "${BOARD_TIMEOUT:-600}" "${MACHINE[0]}" -nodefaults -no-user-config "${MACHINE[@]:1}" \
    -accel tcg,tb-size=128 \
    -kernel "$ROOTFS/boot/vmlinuz-$KVER" -initrd "$INITRD" \
    -append "console=$CONSOLE panic=-1 quiet loglevel=3" \
    -fsdev local,id=r,path="$ROOTFS",security_model=passthrough,readonly=on -device virtio-9p-pci,fsdev=r,mount_tag=rootfs \
    -fsdev local,id=h,path="$SHARE",security_model=none -device virtio-9p-pci,fsdev=h,mount_tag=host \
    "${NET[@]}" -display none -serial stdio -no-reboot > "$SHARE/console.log" 2>&1 || true
cat "$SHARE/scenario.log" 2>/dev/null || { echo "board: the scenario did not run; console:"; tail -40 "$SHARE/console.log"; exit 1; }
exit "$(cat "$SHARE/exit-status" 2>/dev/null || echo 1)"
