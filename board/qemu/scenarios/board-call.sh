#!/bin/sh
# The end-to-end board scenario, inside the emulated board under systemd. The host share
# (/mnt/host) holds the firmware, its systemd files, a tone to speak into the microphone,
# and receives the results. A peer device waits outside the VM at 192.168.77.1 (the host
# side of the board's network, in a namespace made by board-test.sh).
#
# Checks, each printed as "CHECK <name> ok|FAIL <detail>":
#   gpio-shim: the libgpiod shim works on gpio-sim with libgpiod 1.6 and with 2.x
#   gpio-busy: a GPIO line held by another program at start is logged and retried
#   camera-hotplug: started without a camera (fault, LED pattern), vivid loaded later: the
#            idle probe finds it (by card name, whatever node it got) and clears the fault
#   package-install, package-unprovisioned: the .deb installs with dpkg; it creates the
#            user and the state folder and enables the unit, which stays stopped without a config
#   install: with the config written, the service starts as Type=notify (systemctl returns
#            only after READY=1)
#   button:  a press on the gpio-sim button line makes the device call the peer
#   led:     the call LED line is high during the call, low after
#   journal: journalctl -u videophoned shows the call with CALL_ID and PEER fields
#   camera:  vivid's simulated USB disconnect mid-call: the loss is logged, the call goes on,
#            the camera is reopened when it returns and video resumes
#   xrun:    a 1 s stall overruns the microphone and underruns the speaker; both recover
#   hangup:  a second press hangs up
#   echo-call (BOARD_ECHO=1 only): the speakerphone's echo: the device calls a talking peer (audio only, echo
#            cancellation on) while videophone-bench --echo-room plays what the speaker played
#            back into the microphone through a room, with a near-end talker; the host's
#            board_check.py echo then judges ERLE, double talk and an echo path change
#   encoder: the mem2mem encoder path streams through vicodec (FWHT: vicodec has no H.264)
#   decoder: the mem2mem decoder path (source-change event, capture queue, I420 out)
#            decodes vicodec's FWHT back to the picture that went in
#   watchdog: a stopped (SIGSTOP) daemon is killed by its watchdog and restarted
#   display: the bochs screen through DRM/KMS: idle, in call (two dumps) and ringing screens,
#            taken by QEMU's screendump on the host (board_screens.py serve) on request
#   package-upgrade: reinstalling the package over the running service restarts it and keeps
#            the config and the identity (certificate fingerprint)
#   package-purge: dpkg --purge stops the service and removes /var/lib/videophone
# The host then checks what crossed the network and the sound card (board_check.py).
set -u
H=/mnt/host
FAILED=0
check() { # name, condition-exit-status, detail
    if [ "$2" -eq 0 ]; then echo "CHECK $1 ok $3"; else echo "CHECK $1 FAIL $3"; FAILED=1; fi
}
# Bounded: a daemon that stopped answering fails the checks that ask it, not the whole run.
ctl() { timeout 20 /usr/bin/videophonectl "$@"; }
# Asks the host for QEMU's screendump (or, for "ring", a call from the peer) and waits for it.
screen() {
    touch "$H/screen-request-$1"
    for _ in $(seq 150); do [ -e "$H/screen-done-$1" ] && return 0; sleep 0.2; done
    return 1
}
shows() { ctl status --json 2>/dev/null | grep -o '"shows":"[a-z-]*"' | head -1; }
# wait_state STATE TRIES: polls the call's state every 0.2 s until it is STATE; leaves the
# last reading in $state ('"state":"…"') and fails if it never got there.
wait_state() {
    for _ in $(seq "$2"); do
        state=$(ctl status --json 2>/dev/null | grep -o '"state":"[a-z-]*"' | head -1)
        [ "$state" = "\"state\":\"$1\"" ] && return 0
        sleep 0.2
    done
    return 1
}

# --- the board's hardware ------------------------------------------------------------
modprobe snd-aloop
modprobe gpio-sim
modprobe vicodec multiplanar=1
modprobe bochs
mount -t configfs none /sys/kernel/config 2>/dev/null || true
SIM=/sys/kernel/config/gpio-sim/board
mkdir -p $SIM/bank0/line0 $SIM/bank0/line1
echo 8 > $SIM/bank0/num_lines
echo call-button > $SIM/bank0/line0/name
echo call-led > $SIM/bank0/line1/name

# --- network: the board's address on the link to the host side ------------------------
IF=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
ip link set "$IF" up
ip addr add 192.168.77.2/24 dev "$IF"

# --- install the firmware: the Debian package ----------------------------------------
# Its postinst creates the user and group (sysusers), /var/lib/videophone (tmpfiles),
# reloads udev and enables the unit; with no config yet the service must not start.
DEB=$(ls $H/videophone_*_amd64.deb)
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
VIDEOPHONE_DLOPEN_GPIOD= $H/gpio-shim-test-v1 $LINES call-button call-led
check gpio-shim-v1 $? "Sources/CGPIOD/gpiod.c on gpio-sim (v1, Debian's libgpiod.so.2)"
VIDEOPHONE_DLOPEN_GPIOD=$H/libgpiod.so.3 $H/gpio-shim-test-v2 $LINES call-button call-led
check gpio-shim-v2 $? "Sources/CGPIOD/gpiod.c on gpio-sim (v2, libgpiod 2.5 built by board-test.sh)"
button pull-up
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
[display]
output = "drm"
blank_after_s = 0
[[peer]]
name = "peer"
url = "http://192.168.77.1:8090"
token = "board-to-peer"
accept_token = "peer-to-board"
CONF
chmod 0640 /etc/videophone/videophone.toml
chgrp videophone /etc/videophone/videophone.toml

/usr/bin/videophoned --check-config /etc/videophone/videophone.toml
# A daemon that crashes leaves its core in the share, for gdb on the host against the
# build (board-test.sh prints where). Through a pipe: the unit's own view of the
# filesystem is read-only.
echo '|/bin/dd of=/mnt/host/core.videophoned bs=1M status=none' > /proc/sys/kernel/core_pattern
mkdir -p /etc/systemd/system/videophoned.service.d
printf '[Service]\nLimitCORE=infinity\n' > /etc/systemd/system/videophoned.service.d/core.conf
systemctl daemon-reload
# Another program holds the LED line when the daemon starts: it must start anyway, say
# which line and why, and take the line once it is free.
gpioset --mode=signal "$SIMCHIP" 1=0 &
HOLDER=$!
sleep 0.5
timeout 120 systemctl start videophoned
check install $? "$(systemctl show -p ActiveState -p StatusText videophoned | tr '\n' ' ')"
for _ in $(seq 50); do journalctl -u videophoned | grep -q "call LED unavailable" && break; sleep 0.2; done
kill $HOLDER
for _ in $(seq 50); do journalctl -u videophoned | grep -q "call LED ready" && break; sleep 0.2; done
journalctl -u videophoned --no-pager | grep -E "call LED" | tail -2
journalctl -u videophoned -o verbose | grep -q "in use by another program" && journalctl -u videophoned | grep -q "call LED ready"
check gpio-busy $? "LED line held by gpioset at start: logged, then taken when freed"

# --- the camera is plugged in after the daemon started ---------------------------------
faults=$(ctl status --json | grep -o '"faults":\[[^]]*\]')
ledstate=$(ctl status --json | grep -o '"led":"[a-z-]*"')
modprobe vivid n_devs=1 node_types=0x1
for _ in $(seq 60); do ctl status --json | grep -q '"faults":\[\]' && break; sleep 0.25; done
journalctl -u videophoned --no-pager | grep -E "camera (unavailable|back)" | tail -2
[ "$faults" = '"faults":["camera"]' ] && [ "$ledstate" = '"led":"error-camera-missing"' ] && ctl status --json | grep -q '"faults":\[\]'
check camera-hotplug $? "before: $faults $ledstate; vivid loaded: $(ctl status --json | grep -o '"faults":\[[^]]*\]')"
VIVID=""
for d in /dev/video*; do v4l2-ctl -d "$d" --info 2>/dev/null | grep -q "Card type *: vivid" && VIVID=$d; done
PID1=$(systemctl show -p MainPID --value videophoned)
for _ in $(seq 50); do journalctl -u videophoned | grep -q "call button ready" && break; sleep 0.2; done

# --- the microphone hears a 1 kHz tone; the speaker's output is recorded back ----------
aplay -q -D plughw:Loopback,0,0 $H/mic.wav &
APLAY=$!
arecord -q -D plughw:Loopback,1,1 -f S16_LE -r 48000 -c 1 -d 25 $H/speaker.wav &
ARECORD=$!

# --- the screen while idle: the device's name ------------------------------------------
ls -l /dev/dri/ 2>&1 | tail -2
for _ in $(seq 50); do [ "$(shows)" = '"shows":"idle"' ] && break; sleep 0.2; done
journalctl -u videophoned --no-pager | grep -E "display" | tail -2
screen idle
check display-idle "$([ "$(shows)" = '"shows":"idle"' ] && [ -e $H/idle.ppm ]; echo $?)" "$(shows) $(ctl status --json | grep -o '"output":"[^"]*"')"

# --- a short press calls the peer ----------------------------------------------------
button pull-down; sleep 0.3; button pull-up
wait_state in-call 150
check button $? "state after press: $state"
[ "$state" = '"state":"in-call"' ] || journalctl -u videophoned --no-pager | tail -n 40
sleep 2
# --- the screen in the call: the peer's test pattern, twice ----------------------------
for _ in $(seq 100); do
    flips=$(ctl status --json | grep -o '"videoFlips":[0-9]*' | grep -o '[0-9]*$')
    [ "${flips:-0}" -ge 10 ] && break
    sleep 0.2
done
screen call-1; sleep 1.5; screen call-2
check display-call "$([ "${flips:-0}" -ge 10 ] && [ -e $H/call-2.ppm ]; echo $?)" "far-end pictures flipped: $flips; $(ctl status --json | grep -o '"videoFramesDecoded":[0-9]*,"videoDecodeErrors":[0-9]*')"
check led-on "$([ "$(led)" = 1 ]; echo $?)" "call LED line during the call: $(led)"
sleep 5
encoded() { ctl status --json | grep -o '"framesEncoded":[0-9]*' | head -1 | grep -o '[0-9]*$'; }
before=$(encoded)
v4l2-ctl -d "$VIVID" -c disconnect=1
for _ in $(seq 40); do journalctl -u videophoned | grep -q "camera back" && break; sleep 0.5; done
sleep 4
after=$(encoded)
journalctl -u videophoned --no-pager | grep -E "camera (lost|back)" | tail -2
journalctl -u videophoned | grep -q "camera lost" && journalctl -u videophoned | grep -q "camera back" && [ "${after:-0}" -gt "$(( ${before:-0} + 10 ))" ]
check camera $? "frames encoded before the disconnect $before, after it returned $after"

# --- a 1 s stall (the process stopped): both sound cards run past us and must recover ----
field() { ctl status --json | grep -o "\"$1\":[0-9]*" | head -1 | grep -o '[0-9]*$'; }
sent1=$(ctl status --json | grep -o '"kind":"audio","ssrc":[0-9]*,"packetsSent":[0-9]*' | grep -o '[0-9]*$')
kill -STOP "$PID1"; sleep 1; kill -CONT "$PID1"
sleep 3
sent2=$(ctl status --json | grep -o '"kind":"audio","ssrc":[0-9]*,"packetsSent":[0-9]*' | grep -o '[0-9]*$')
over=$(field microphoneOverruns); under=$(field speakerUnderruns)
[ "${over:-0}" -ge 1 ] && [ "${under:-0}" -ge 1 ] && [ "${sent2:-0}" -gt "$(( ${sent1:-0} + 60 ))" ]
check xrun $? "after a 1 s stall: microphone overruns $over, speaker underruns $under, audio packets sent $sent1 -> $sent2"
sleep 3
ctl status
ctl status --json > $H/board-status.json
CG=/sys/fs/cgroup/system.slice/videophoned.service
echo "cpu_usec=$(awk '/usage_usec/ {print $2}' $CG/cpu.stat) memory_peak=$(cat $CG/memory.peak 2>/dev/null || echo ?) vmhwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$PID1/status) call_seconds=27" > $H/board-resources.txt
cat $H/board-resources.txt

# --- a second press hangs up ---------------------------------------------------------
button pull-down; sleep 0.3; button pull-up
wait_state idle 50
check hangup $? "state after second press: $state"
sleep 1
check led-off "$([ "$(led)" = 0 ]; echo $?)" "call LED line after the call: $(led)"
# --- the peer calls the board: the ringing screen, then a long press rejects ------------
screen ring
for _ in $(seq 100); do [ "$(shows)" = '"shows":"ringing"' ] && break; sleep 0.2; done
screen ringing
check display-ringing "$([ -e $H/ringing.ppm ]; echo $?)" "$(shows) after the peer called: $(cat $H/screen-done-ring)"
button pull-down; sleep 2; button pull-up
wait_state idle 50
wait $ARECORD 2>/dev/null
kill $APLAY 2>/dev/null

# --- the speakerphone's echo: a room between the board's speaker and its microphone -----
# Only with BOARD_ECHO=1 (make board-echo): it adds minutes under software emulation.
# The device now calls a second peer that talks (speech with long silences). What the board
# plays goes through a room (videophone-bench --echo-room: attenuated, delayed, smeared) and
# back into its microphone, with a near-end talker (see EchoRoom.swift for when each talks).
# Audio only: under software emulation x264 and the echo canceller together do not keep real
# time (the profile turns the stage off for that reason; the stage alone needs ~14 ms of a
# vCPU per 10 ms frame under TCG, so even this call falls behind). board_check.py then
# sets the room's log beside the stage's energies in and out (what the call sends).
if [ -e $H/echo-call ]; then
cp /etc/videophone/videophone.toml /run/videophone-main.toml
cat > /etc/videophone/videophone.toml <<'CONF'
[device]
name = "board"
board = "emulated"
state_directory = "/var/lib/videophone"
[signalling]
listen = "0.0.0.0:8080"
token = "board-in-token"
[control]
socket = "/run/videophone/control.sock"
[network]
addresses = ["192.168.77.2"]
[video]
source = "none"
[audio]
echo_cancellation = true
noise_suppression = true
gain_control = true
[[peer]]
name = "talker"
url = "http://192.168.77.1:8091"
token = "board-to-talker"
accept_token = "talker-to-board"
CONF
ready=$(journalctl -u videophoned | grep -c "call button ready")
systemctl restart videophoned
for _ in $(seq 100); do [ "$(journalctl -u videophoned | grep -c "call button ready")" -gt "$ready" ] && ctl status >/dev/null 2>&1 && break; sleep 0.2; done
$H/videophone-bench --echo-room plughw:Loopback,1,1 plughw:Loopback,0,0 $H/near.wav /run/echo-room.log --seconds 75 &
ROOM=$!
( while sleep 0.5; do
      a=$(date +%s.%N); j=$(ctl status --json 2>/dev/null | grep -o '"microphoneEnergy":[^,]*,"processedEnergy":[^,]*,"totalSamplesDuration":[^,}]*'); b=$(date +%s.%N)
      echo "t=$a u=$b $j"
  done > /run/echo-status.log ) &
POLL=$!
sleep 1
button pull-down; sleep 0.3; button pull-up
wait_state in-call 150
check echo-call $? "state after press: $state (calling the talking peer, audio only, stage on)"
for _ in $(seq 140); do grep -q done /run/echo-room.log 2>/dev/null && break; sleep 0.5; done
ctl status --json > $H/echo-board-status.json
button pull-down; sleep 0.3; button pull-up
sleep 1
kill $POLL $ROOM 2>/dev/null
wait $ROOM
cp /run/echo-room.log /run/echo-status.log $H/
tail -n 2 $H/echo-room.log
ctl status --json | grep -o '"audioProcessing":{[^}]*}'
cp /run/videophone-main.toml /etc/videophone/videophone.toml
systemctl restart videophoned
fi

# --- the hardware encoder path: vicodec's stateful encoder (FWHT) ----------------------
/usr/bin/videophoned --check-encoder :FWHT > $H/encoder.txt 2>&1
check encoder $? "$(tr '\n' ' ' < $H/encoder.txt)"
# --- the hardware decoder path: vicodec's stateful decoder (FWHT), fed by its encoder ----
/usr/bin/videophoned --check-decoder :FWHT > $H/decoder.txt 2>&1
check decoder $? "$(tr '\n' ' ' < $H/decoder.txt)"

journalctl -u videophoned -o json --no-pager > $H/journal.json
journalctl -u videophoned --no-pager | tail -40
grep -q '"CALL_ID"' $H/journal.json && grep -q '"PEER":"peer"' $H/journal.json
check journal $? "structured CALL_ID and PEER fields in journalctl -u videophoned"

# --- a stalled daemon: the watchdog kills it and systemd starts it again ----------------
kill -STOP "$PID1"
PID2=$PID1
for _ in $(seq 60); do
    PID2=$(systemctl show -p MainPID --value videophoned)
    [ "$PID2" != "$PID1" ] && [ "$PID2" != 0 ] && [ "$(systemctl is-active videophoned)" = active ] && break
    sleep 1
done
journalctl -u videophoned --no-pager | grep -iE "watchdog|Scheduled restart" | tail -3
check watchdog "$([ "$PID2" != "$PID1" ] && [ "$PID2" != 0 ]; echo $?)" "main PID $PID1 -> $PID2, $(systemctl show -p NRestarts videophoned)"

# --- package upgrade over the running service, then purge ------------------------------
FP1=$(ctl identity 2>/dev/null | sha256sum); CONF1=$(sha256sum < /etc/videophone/videophone.toml)
PID3=$(systemctl show -p MainPID --value videophoned)
dpkg -i "$DEB" > $H/dpkg-upgrade.log 2>&1; rc=$?
for _ in $(seq 50); do [ "$(systemctl is-active videophoned)" = active ] && break; sleep 0.2; done
PID4=$(systemctl show -p MainPID --value videophoned)
FP2=$(ctl identity 2>/dev/null | sha256sum); CONF2=$(sha256sum < /etc/videophone/videophone.toml)
[ $rc -eq 0 ] && [ "$PID4" != "$PID3" ] && [ "$PID4" != 0 ] && [ "$FP1" = "$FP2" ] && [ "$CONF1" = "$CONF2" ]
check package-upgrade $? "dpkg exit $rc, main PID $PID3 -> $PID4, identity kept: $([ "$FP1" = "$FP2" ] && echo yes || echo no), config kept: $([ "$CONF1" = "$CONF2" ] && echo yes || echo no)"
dpkg --purge videophone > $H/dpkg-purge.log 2>&1; rc=$?
[ $rc -eq 0 ] && [ "$(systemctl is-active videophoned)" != active ] && [ ! -e /var/lib/videophone ] && [ ! -e /usr/bin/videophoned ]
check package-purge $? "dpkg exit $rc, active=$(systemctl is-active videophoned), state dir: $(ls -d /var/lib/videophone 2>&1 | tail -1)"
exit $FAILED
