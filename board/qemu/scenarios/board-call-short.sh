#!/bin/sh
# The shorter board scenario, for the emulated arm64 board (software emulation of another
# architecture is several times slower than the x86 board): the same set-up as
# board-call.sh, the same peer outside the VM, but only the core of it:
#   drivers:  vivid, snd-aloop (Debian's arm64 kernel) and gpio-sim (cross-built) are seen
#   package-install, package-unprovisioned: the arm64 .deb installs with dpkg, creates the
#            user and the state folder, enables the unit, which stays stopped without a config
#   install:  with the config written, the service starts as Type=notify
#   button:   a press on the gpio-sim button line calls the peer; led: the call LED is lit
#   call:     frames are encoded and sent while the microphone hears a tone and the speaker
#             is recorded back (board_check.py checks both ends on the host)
#   hangup:   a second press hangs up; the LED goes dark
#   memory:   VmRSS/VmHWM of videophoned idle (before the call) and in the call
# Left to the x86 board: the GPIO shim against both libgpiod APIs, a busy GPIO line, camera
# hot-plug and disconnect, xruns, the screen, vicodec's encoder and decoder paths, the
# watchdog, package upgrade and purge.
set -u
H=/mnt/host
FAILED=0
check() { # name, condition-exit-status, detail
    if [ "$2" -eq 0 ]; then echo "CHECK $1 ok $3"; else echo "CHECK $1 FAIL $3"; FAILED=1; fi
}
ctl() { timeout 20 /usr/bin/videophonectl "$@"; }
state() { ctl status --json 2>/dev/null | grep -o '"state":"[a-z-]*"' | head -1; }
# Polled once a second: each videophonectl is a large static binary, and starting it several
# times a second under emulation took the CPU the daemon's call needed.
wait_state() { # state, seconds
    for _ in $(seq "$2"); do [ "$(state)" = "\"state\":\"$1\"" ] && return 0; sleep 1; done
    return 1
}
mem() { awk '/^VmRSS|^VmHWM/ {printf "%s=%s ", $1, $2}' /proc/"$1"/status; }

echo "board: $(uname -m), kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME")"
# --- the board's hardware ------------------------------------------------------------
modprobe snd-aloop
modprobe gpio-sim
modprobe vivid n_devs=1 node_types=0x1
mount -t configfs none /sys/kernel/config 2>/dev/null || true
SIM=/sys/kernel/config/gpio-sim/board
mkdir -p $SIM/bank0/line0 $SIM/bank0/line1
echo 8 > $SIM/bank0/num_lines
echo call-button > $SIM/bank0/line0/name
echo call-led > $SIM/bank0/line1/name
VIVID=""
for d in /dev/video*; do v4l2-ctl -d "$d" --info 2>/dev/null | grep -q "Card type *: vivid" && VIVID=$d; done
[ -n "$VIVID" ] && aplay -l 2>/dev/null | grep -q Loopback && [ -d $SIM ]
check drivers $? "camera: ${VIVID:-none}, sound: $(aplay -l 2>/dev/null | grep -c Loopback) Loopback device(s), gpio-sim: $(lsmod | grep -c '^gpio_sim')"

IF=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
ip link set "$IF" up
ip addr add 192.168.77.2/24 dev "$IF"

# --- install the firmware: the Debian package ----------------------------------------
DEB=$(ls $H/videophone_*_arm64.deb)
dpkg -i "$DEB" > $H/dpkg-install.log 2>&1
check package-install $? "dpkg -i $(basename "$DEB"): $(tail -n 3 $H/dpkg-install.log | tr '\n' ' ')"
[ "$(systemctl is-enabled videophoned)" = enabled ] && [ "$(systemctl is-active videophoned)" != active ] \
    && getent passwd videophone >/dev/null && [ -d /var/lib/videophone ] && [ -f /etc/videophone/videophone.toml.example ]
check package-unprovisioned $? "enabled=$(systemctl is-enabled videophoned) active=$(systemctl is-active videophoned) user=$(getent passwd videophone | cut -d: -f1) state=$(stat -c %U:%a /var/lib/videophone 2>&1)"
udevadm control --reload
echo 1 > $SIM/live
udevadm settle
SIMDEV=$(cat $SIM/dev_name)
SIMCHIP=$(cat $SIM/bank0/chip_name)
LINES=/sys/devices/platform/$SIMDEV/$SIMCHIP
button() { echo "$1" > $LINES/sim_gpio0/pull; }   # pull-down: pressed (active low)
led() { cat $LINES/sim_gpio1/value; }
button pull-up
gpioinfo 2>/dev/null | grep -E 'call-(button|led)'

mkdir -p /etc/videophone
cat > /etc/videophone/videophone.toml <<'CONF'
[device]
name = "board"
board = "emulated"                # /usr/share/videophone/boards/emulated.toml: camera, sound, GPIO
state_directory = "/var/lib/videophone"
[signalling]
listen = "0.0.0.0:8080"
token = "board-in-token"
[control]
socket = "/run/videophone/control.sock"
[network]
addresses = ["192.168.77.2"]
# A lighter picture than the profile's 640x480@15: x264 on an emulated arm64 CPU at that
# size starved the transport thread (the peer's consent checks went unanswered for 30 s).
[video]
width = 320
height = 240
fps = 10
bitrate_kbps = 200
[[peer]]
name = "peer"
url = "http://192.168.77.1:8090"
token = "board-to-peer"
accept_token = "peer-to-board"
CONF
chmod 0640 /etc/videophone/videophone.toml
chgrp videophone /etc/videophone/videophone.toml
/usr/bin/videophoned --check-config /etc/videophone/videophone.toml

T0=$(date +%s)
timeout 300 systemctl start videophoned
check install $? "$(systemctl show -p ActiveState -p StatusText videophoned | tr '\n' ' ')in $(( $(date +%s) - T0 )) s"
PID=$(systemctl show -p MainPID --value videophoned)
for _ in $(seq 100); do journalctl -u videophoned | grep -q "call button ready" && break; sleep 0.2; done
for _ in $(seq 30); do ctl status --json | grep -q '"faults":\[\]' && break; sleep 1; done
check devices "$(ctl status --json | grep -q '"faults":\[\]'; echo $?)" "faults: $(ctl status --json | grep -o '"faults":\[[^]]*\]'); $(journalctl -u videophoned --no-pager | grep -cE 'call button ready|call LED ready') GPIO line(s) ready"
sleep 5
IDLE=$(mem "$PID")
echo "idle: $IDLE"
# BOARD_SMOKE (board-test.sh): boot, install, start and devices only; no call.
if [ -e $H/smoke-only ]; then
    echo "idle_vmrss_kb=$(echo "$IDLE" | sed -E 's/.*VmRSS:=([0-9]+).*/\1/') idle_vmhwm_kb=$(echo "$IDLE" | sed -E 's/.*VmHWM:=([0-9]+).*/\1/')" > $H/board-resources.txt
    exit $FAILED
fi
# The daemon's threads (named) and their CPU, every 10 s through the call: under emulation a
# starved or spinning thread shows here first.
( for _ in $(seq 12); do
      date +%T; top -b -H -n 1 -w 160 -p "$PID" | sed -n '7,20p'; top -b -n 1 -w 160 | sed -n '7,12p'
      journalctl -u videophoned -n 4 --no-pager -o cat; sleep 10
  done > $H/threads.log 2>&1 ) &

# --- the microphone hears a 1 kHz tone; the speaker's output is recorded back ----------
aplay -q -D plughw:Loopback,0,0 $H/mic.wav &
APLAY=$!
arecord -q -D plughw:Loopback,1,1 -f S16_LE -r 48000 -c 1 -d 40 $H/speaker.wav &
ARECORD=$!

# --- a short press calls the peer ----------------------------------------------------
T1=$(date +%s)
button pull-down; sleep 0.3; button pull-up
wait_state in-call 90
check button $? "state after press: $(state), $(( $(date +%s) - T1 )) s"
sleep 2
check led-on "$([ "$(led)" = 1 ]; echo $?)" "call LED line during the call: $(led)"
encoded() { ctl status --json | grep -o '"framesEncoded":[0-9]*' | head -1 | grep -o '[0-9]*$'; }
e1=$(encoded)
sleep 20
e2=$(encoded)
check call "$([ "${e2:-0}" -gt "$(( ${e1:-0} + 20 ))" ]; echo $?)" "frames encoded over 20 s: ${e1:-?} -> ${e2:-?}"
ctl status
ctl status --json > $H/board-status.json
CALL=$(mem "$PID")
echo "in call: $CALL"
CG=/sys/fs/cgroup/system.slice/videophoned.service
echo "cpu_usec=$(awk '/usage_usec/ {print $2}' $CG/cpu.stat) memory_peak=$(cat $CG/memory.peak 2>/dev/null || echo ?) vmhwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$PID/status) call_seconds=22 idle_vmrss_kb=$(echo "$IDLE" | sed -E 's/.*VmRSS:=([0-9]+).*/\1/') idle_vmhwm_kb=$(echo "$IDLE" | sed -E 's/.*VmHWM:=([0-9]+).*/\1/') call_vmrss_kb=$(echo "$CALL" | sed -E 's/.*VmRSS:=([0-9]+).*/\1/')" > $H/board-resources.txt
cat $H/board-resources.txt

# --- a second press hangs up ---------------------------------------------------------
button pull-down; sleep 0.3; button pull-up
wait_state idle 45
check hangup $? "state after second press: $(state)"
sleep 1
check led-off "$([ "$(led)" = 0 ]; echo $?)" "call LED line after the call: $(led)"
kill $ARECORD $APLAY 2>/dev/null
wait $ARECORD 2>/dev/null
journalctl -u videophoned --no-pager > $H/journal.txt
tail -25 $H/journal.txt
exit $FAILED
