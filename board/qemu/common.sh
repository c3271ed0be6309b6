# Shared by the emulated boards' scripts (sourced, not run): the x86 board (build.sh) and the
# arm64 board (build-arm64.sh). Each cache step names itself, so a failure says which one.
#   board_begin STEP TEXT     announces a step; board_fail TEXT ends with "step STEP failed: TEXT"
#   board_trap_errors         an unexpected error (set -e) also names the step that was running

board_step=""
board_fail() {
    echo "board: step '${board_step:-?}' failed: $*" >&2
    board_reported=1
    exit 1
}
board_begin() {
    board_step="$1"
    echo "board: [$1] $2" >&2
}
board_trap_errors() {
    trap 'rc=$?; [ $rc -eq 0 ] || [ -n "${board_reported:-}" ] || echo "board: step '"'"'${board_step:-?}'"'"' failed (exit $rc); see the messages above" >&2' EXIT
}

# The unit that runs the host's scenario (shared over 9p as "host") after boot, records its
# exit status there and powers the board off. CONSOLE: the board's serial console device.
#   board_scenario_unit ROOTFS CONSOLE
board_scenario_unit() {
    [ -e "$1/etc/systemd/system/board-scenario.service" ] && return 0
    $SUDO tee "$1/etc/systemd/system/board-scenario.service" >/dev/null <<UNIT
[Unit]
Description=Run the host's board scenario
After=multi-user.target

[Service]
Type=oneshot
ExecStartPre=/bin/mkdir -p /mnt/host
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L host /mnt/host
ExecStart=/bin/sh -c '/bin/sh /mnt/host/scenario.sh > /mnt/host/scenario.log 2>&1; echo \$? > /mnt/host/exit-status; echo "BOARD-SCENARIO-DONE \$(cat /mnt/host/exit-status)" > /dev/$2'
ExecStartPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
    $SUDO mkdir -p "$1/etc/systemd/system/multi-user.target.wants"
    $SUDO ln -sf /etc/systemd/system/board-scenario.service "$1/etc/systemd/system/multi-user.target.wants/board-scenario.service"
    # No login prompts or network waits on the console.
    $SUDO ln -sf /dev/null "$1/etc/systemd/system/serial-getty@$2.service"
    $SUDO ln -sf /dev/null "$1/etc/systemd/system/getty@tty1.service"
}

# gpio-sim (with the irq_sim it needs) and vicodec (with v4l2-mem2mem): Debian's kernel
# config leaves them out, so they are built from Debian's kernel source against the
# board kernel's headers and put under the rootfs's updates/. Cached: skipped when present.
#   board_extra_modules CACHE ROOTFS KVER SOURCE_TARBALL HEADERS_DIR [MAKE_ARG...]
board_extra_modules() {
    cache=$1; rootfs=$2; kver=$3; tarball=$4; headers=$5; shift 5
    if [ ! -e "$rootfs/lib/modules/$kver/updates/gpio-sim.ko" ]; then
        board_begin "gpio-sim" "building gpio-sim and irq_sim for $kver"
        src=$cache/gpio-sim-src
        rm -rf "$src" && mkdir -p "$src"
        tar -xaf "$tarball" -C "$src" --wildcards \
            '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpiolib.h' '*/kernel/irq/irq_sim.c' \
            || board_fail "gpio-sim's sources are not in $tarball"
        cp "$src"/linux-source-*/drivers/gpio/gpio-sim.c "$src"/linux-source-*/drivers/gpio/gpiolib.h \
           "$src"/linux-source-*/kernel/irq/irq_sim.c "$src"/
        # irq_to_desc is not exported to modules; the module form needs a licence tag.
        sed -i 's/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/' "$src/irq_sim.c"
        grep -q MODULE_LICENSE "$src/irq_sim.c" || printf '\n#include <linux/module.h>\nMODULE_LICENSE("GPL");\n' >> "$src/irq_sim.c"
        printf 'obj-m += irq_sim.o gpio-sim.o\n' > "$src/Kbuild"
        make -s -C "$headers" "$@" M="$src" modules > "$src/build.log" 2>&1 \
            || { tail -n 20 "$src/build.log" >&2; board_fail "make modules for gpio-sim against $headers (log: $src/build.log)"; }
        $SUDO mkdir -p "$rootfs/lib/modules/$kver/updates"
        $SUDO cp "$src"/irq_sim.ko "$src"/gpio-sim.ko "$rootfs/lib/modules/$kver/updates/"
        $SUDO depmod -b "$rootfs" "$kver"
    fi
    # vicodec: a stateful mem2mem codec, the emulated board's stand-in for a hardware encoder.
    if [ ! -e "$rootfs/lib/modules/$kver/updates/vicodec.ko" ]; then
        board_begin "vicodec" "building vicodec and v4l2-mem2mem for $kver"
        src=$cache/vicodec-src
        rm -rf "$src" && mkdir -p "$src"
        tar -xaf "$tarball" -C "$src" --wildcards \
            '*/drivers/media/v4l2-core/v4l2-mem2mem.c' '*/drivers/media/test-drivers/vicodec/*' \
            || board_fail "vicodec's sources are not in $tarball"
        cp "$src"/linux-source-*/drivers/media/v4l2-core/v4l2-mem2mem.c "$src"/linux-source-*/drivers/media/test-drivers/vicodec/*.[ch] "$src"/
        # The mem2mem core too, unless the kernel already ships it (Debian's arm64 one does).
        m2m="v4l2-mem2mem.o "
        grep -qE '^CONFIG_V4L2_MEM2MEM_DEV=[ym]' "$headers/include/config/auto.conf" 2>/dev/null && m2m=""
        printf 'obj-m += %svicodec.o\nvicodec-objs := vicodec-core.o codec-fwht.o codec-v4l2-fwht.o\n' "$m2m" > "$src/Kbuild"
        make -s -C "$headers" "$@" M="$src" modules > "$src/build.log" 2>&1 \
            || { tail -n 20 "$src/build.log" >&2; board_fail "make modules for vicodec against $headers (log: $src/build.log)"; }
        $SUDO mkdir -p "$rootfs/lib/modules/$kver/updates"
        $SUDO cp "$src"/vicodec.ko "$rootfs/lib/modules/$kver/updates/"
        [ -z "$m2m" ] || $SUDO cp "$src"/v4l2-mem2mem.ko "$rootfs/lib/modules/$kver/updates/"
        $SUDO depmod -b "$rootfs" "$kver"
    fi
}

# The initramfs: a static busybox, the virtio/9p/overlay modules, and an init that mounts the
# rootfs over 9p read-only with a tmpfs overlay (so every boot starts clean) and switches
# root to systemd. The overlay's tmpfs may use most of the RAM, so that a package upgrade,
# which holds old and new binaries at once, fits.
#   board_initrd ROOTFS KVER BUSYBOX OUT.img MODULE...
board_initrd() {
    rootfs=$1; kver=$2; busybox=$3; out=$4; shift 4
    [ -e "$out" ] && return 0
    board_begin "initramfs" "making $out"
    dir=$out.d
    rm -rf "$dir" && mkdir -p "$dir"/bin "$dir"/dev "$dir"/proc "$dir"/sys "$dir"/mnt/lower "$dir"/mnt/upper "$dir"/newroot "$dir"/lib/modules
    cp "$busybox" "$dir/bin/busybox" || board_fail "no static busybox at $busybox"
    : > "$dir/lib/modules/order"
    for m in "$@"; do
        # Built-in modules print "builtin ..." and need nothing.
        for f in $(modprobe -d "$rootfs" -S "$kver" --show-depends "$m" | awk '/^insmod/ {print $2}'); do
            # modprobe -d may print the path with or without the rootfs in front.
            [ -e "$rootfs$f" ] && f=$rootfs$f
            [ -e "$f" ] || board_fail "module $f ($m) not found in $rootfs"
            # busybox's insmod takes plain .ko files: Debian 13 ships them xz-compressed.
            name=$(basename "$f" .xz)
            case "$f" in
            *.xz) xz -dc "$f" > "$dir/lib/modules/$name" || board_fail "could not decompress $f" ;;
            *) cp "$f" "$dir/lib/modules/" ;;
            esac
            echo "$name" >> "$dir/lib/modules/order"
        done
    done
    cat > "$dir/init" <<'INIT'
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
    chmod +x "$dir/init"
    (cd "$dir" && find . | cpio -o -H newc 2>/dev/null | gzip > "$out.tmp") || board_fail "cpio of $dir"
    mv "$out.tmp" "$out"
}
