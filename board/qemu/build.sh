#!/bin/bash
# Builds the emulated board's pieces once, outside the repository (cached, rebuilt when
# absent): a Debian 12 rootfs with Debian's kernel, the gpio-sim and vicodec modules (not
# shipped by Debian) built from Debian's kernel source, and a tiny initramfs that mounts the rootfs
# over 9p with a tmpfs overlay so every boot starts clean.
#   board/qemu/build.sh            → prints the cache directory
set -euo pipefail
CACHE=${VIDEOPHONE_BOARD_CACHE:-$HOME/.cache/videophone-board}
ROOTFS=$CACHE/rootfs
mkdir -p "$CACHE"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

"$(dirname "$0")/../../toolchain/apt-ensure.sh" qemu-system-x86 qemu-utils debootstrap busybox-static cpio kmod gcc make xz-utils bc flex bison libelf-dev libgpiod-dev python3-pip

# The mirror this machine's apt already uses (never a hard-coded host).
MIRROR=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) | grep -oE '^(URIs:|deb) *https?://[^ ]+' | head -1 | sed -E 's/^(URIs:|deb) *//' || true)
[ -n "$MIRROR" ] || { echo "board: no Debian mirror found in apt's sources" >&2; exit 1; }

if [ ! -e "$ROOTFS/.complete" ]; then
    echo "board: debootstrap into $ROOTFS (about a minute)" >&2
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

# A unit that runs the host's scenario (shared over 9p as "host") after boot, records its
# exit status there and powers the board off.
if [ ! -e "$ROOTFS/etc/systemd/system/board-scenario.service" ]; then
    $SUDO tee "$ROOTFS/etc/systemd/system/board-scenario.service" >/dev/null <<'UNIT'
[Unit]
Description=Run the host's board scenario
After=multi-user.target
ConditionPathExists=/dev/virtio-ports

[Service]
Type=oneshot
ExecStartPre=/bin/mkdir -p /mnt/host
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L host /mnt/host
ExecStart=/bin/sh -c '/bin/sh /mnt/host/scenario.sh > /mnt/host/scenario.log 2>&1; echo $? > /mnt/host/exit-status; echo "BOARD-SCENARIO-DONE $(cat /mnt/host/exit-status)" > /dev/ttyS0'
ExecStartPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
    $SUDO sed -i 's|^ConditionPathExists=/dev/virtio-ports$||' "$ROOTFS/etc/systemd/system/board-scenario.service"
    $SUDO mkdir -p "$ROOTFS/etc/systemd/system/multi-user.target.wants"
    $SUDO ln -sf /etc/systemd/system/board-scenario.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/board-scenario.service"
    # No login prompts or network waits on the console.
    $SUDO ln -sf /dev/null "$ROOTFS/etc/systemd/system/serial-getty@ttyS0.service"
    $SUDO ln -sf /dev/null "$ROOTFS/etc/systemd/system/getty@tty1.service"
fi

# gpio-sim (and the irq_sim it needs) from Debian's own kernel source, same version.
if [ ! -e "$ROOTFS/lib/modules/$KVER/updates/gpio-sim.ko" ]; then
    echo "board: building gpio-sim for $KVER" >&2
    "$(dirname "$0")/../../toolchain/apt-ensure.sh" "linux-headers-$KVER" linux-source-6.1
    SRC=$CACHE/gpio-sim-src
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xaf /usr/src/linux-source-6.1.tar.xz -C "$SRC" --wildcards \
        '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpiolib.h' '*/kernel/irq/irq_sim.c'
    cp "$SRC"/linux-source-6.1/drivers/gpio/gpio-sim.c "$SRC"/linux-source-6.1/drivers/gpio/gpiolib.h \
       "$SRC"/linux-source-6.1/kernel/irq/irq_sim.c "$SRC"/
    # irq_to_desc is not exported to modules; the module form needs a licence tag.
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/' "$SRC/irq_sim.c"
    grep -q MODULE_LICENSE "$SRC/irq_sim.c" || printf '\n#include <linux/module.h>\nMODULE_LICENSE("GPL");\n' >> "$SRC/irq_sim.c"
    printf 'obj-m += irq_sim.o gpio-sim.o\n' > "$SRC/Kbuild"
    make -s -C "/usr/src/linux-headers-$KVER" M="$SRC" modules >/dev/null
    $SUDO mkdir -p "$ROOTFS/lib/modules/$KVER/updates"
    $SUDO cp "$SRC"/irq_sim.ko "$SRC"/gpio-sim.ko "$ROOTFS/lib/modules/$KVER/updates/"
    $SUDO depmod -b "$ROOTFS" "$KVER"
fi

# vicodec (a stateful mem2mem codec, the emulated board's stand-in for a hardware encoder)
# and the v4l2-mem2mem core it needs: Debian's kernel config leaves both out.
if [ ! -e "$ROOTFS/lib/modules/$KVER/updates/vicodec.ko" ]; then
    echo "board: building vicodec and v4l2-mem2mem for $KVER" >&2
    "$(dirname "$0")/../../toolchain/apt-ensure.sh" "linux-headers-$KVER" linux-source-6.1
    SRC=$CACHE/vicodec-src
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xaf /usr/src/linux-source-6.1.tar.xz -C "$SRC" --wildcards \
        '*/drivers/media/v4l2-core/v4l2-mem2mem.c' '*/drivers/media/test-drivers/vicodec/*'
    cp "$SRC"/linux-source-6.1/drivers/media/v4l2-core/v4l2-mem2mem.c "$SRC"/linux-source-6.1/drivers/media/test-drivers/vicodec/*.[ch] "$SRC"/
    printf 'obj-m += v4l2-mem2mem.o vicodec.o\nvicodec-objs := vicodec-core.o codec-fwht.o codec-v4l2-fwht.o\n' > "$SRC/Kbuild"
    make -s -C "/usr/src/linux-headers-$KVER" M="$SRC" modules >/dev/null 2>&1
    $SUDO mkdir -p "$ROOTFS/lib/modules/$KVER/updates"
    $SUDO cp "$SRC"/v4l2-mem2mem.ko "$SRC"/vicodec.ko "$ROOTFS/lib/modules/$KVER/updates/"
    $SUDO depmod -b "$ROOTFS" "$KVER"
fi

# The initramfs: busybox, the virtio/9p/overlay modules, and an init that switches root.
# (initrd-v2: the overlay's tmpfs may use most of the RAM, so that a package upgrade, which
# holds old and new binaries at once, fits; a cached older image is left for older trees.)
if [ ! -e "$CACHE/initrd-v2.img" ]; then
    echo "board: making the initramfs" >&2
    INITRAMFS=$CACHE/initramfs-v2
    rm -rf "$INITRAMFS" && mkdir -p "$INITRAMFS"/{bin,dev,proc,sys,mnt/lower,mnt/upper,newroot,lib/modules}
    cp /bin/busybox "$INITRAMFS/bin/"
    for m in virtio_pci 9pnet_virtio 9p overlay; do
        for f in $(modprobe -d "$ROOTFS" -S "$KVER" --show-depends "$m" | awk '/^insmod/ {print $2}'); do
            cp "$ROOTFS$f" "$INITRAMFS/lib/modules/" 2>/dev/null || cp "$f" "$INITRAMFS/lib/modules/"
            echo "$(basename "$f")" >> "$INITRAMFS/lib/modules/order"
        done
    done
    cat > "$INITRAMFS/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro rootfs /mnt/lower
mount -t tmpfs -o size=85% tmpfs /mnt/upper
mkdir -p /mnt/upper/upper /mnt/upper/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/upper/upper,workdir=/mnt/upper/work /newroot
exec switch_root /newroot /lib/systemd/systemd
INIT
    chmod +x "$INITRAMFS/init"
    (cd "$INITRAMFS" && find . | cpio -o -H newc 2>/dev/null | gzip > "$CACHE/initrd-v2.img")
fi
echo "$CACHE"
