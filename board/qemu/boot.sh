#!/bin/bash
# Boots the emulated board (software emulation: this machine's KVM cannot run Debian's
# kernel) and runs a scenario script inside it under systemd; prints the scenario's log
# and exits with its status.
#   [BOARD_TAP=tapN] board/qemu/boot.sh SCENARIO.sh [SHARED_DIR]
set -euo pipefail
SCENARIO=$1
CACHE=$("$(dirname "$0")/build.sh")
ROOTFS=$CACHE/rootfs
KVER=$(ls "$ROOTFS/lib/modules" | sort | tail -1)
SHARE=${2:-$(mktemp -d)}
mkdir -p "$SHARE"
cp "$SCENARIO" "$SHARE/scenario.sh"
rm -f "$SHARE/exit-status" "$SHARE/scenario.log"
BIOS=()
[ -e /usr/share/qemu/qboot.rom ] && BIOS=(-bios /usr/share/qemu/qboot.rom)
# BOARD_TAP: a tap device (in the caller's network namespace) as the board's network.
NET=()
[ -n "${BOARD_TAP:-}" ] && NET=(-netdev "tap,id=n0,ifname=$BOARD_TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0)
# A screen Debian's kernel drives through DRM (bochs), 640x480, and QEMU's monitor (QMP) on a
# socket in the share, so the host can take screendumps (board/qemu/board_screens.py).
SCREEN=(-device bochs-display,xres=640,yres=480 -qmp "unix:$SHARE/qmp.sock,server=on,wait=off")
timeout "${BOARD_TIMEOUT:-600}" qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${BIOS[@]}" \
    -accel tcg,tb-size=128 -m 512 -smp 1 \
    -kernel "$ROOTFS/boot/vmlinuz-$KVER" -initrd "$CACHE/initrd-v2.img" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3" \
    -fsdev local,id=r,path="$ROOTFS",security_model=passthrough,readonly=on -device virtio-9p-pci,fsdev=r,mount_tag=rootfs \
    -fsdev local,id=h,path="$SHARE",security_model=none -device virtio-9p-pci,fsdev=h,mount_tag=host \
    "${NET[@]}" "${SCREEN[@]}" -display none -serial stdio -no-reboot > "$SHARE/console.log" 2>&1 || true
cat "$SHARE/scenario.log" 2>/dev/null || { echo "board: the scenario did not run; console:"; tail -40 "$SHARE/console.log"; exit 1; }
exit "$(cat "$SHARE/exit-status" 2>/dev/null || echo 1)"
