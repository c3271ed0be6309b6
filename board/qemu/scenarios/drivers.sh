#!/bin/sh
# Smoke scenario: the emulated board's drivers load and show up as a camera, a sound card
# and a GPIO chip with named lines.
set -e
modprobe vivid n_devs=1 node_types=0x1
modprobe snd-aloop
modprobe gpio-sim
mount -t configfs none /sys/kernel/config 2>/dev/null || true
CHIP=/sys/kernel/config/gpio-sim/board
mkdir -p $CHIP/bank0/line0 $CHIP/bank0/line1
echo 8 > $CHIP/bank0/num_lines
echo button > $CHIP/bank0/line0/name
echo call-led > $CHIP/bank0/line1/name
echo 1 > $CHIP/live
echo "camera:"; v4l2-ctl --list-devices
echo "sound:"; aplay -l | grep -i loopback
echo "gpio:"; gpiodetect; gpioinfo | grep -E 'button|call-led'
