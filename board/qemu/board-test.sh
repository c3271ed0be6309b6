#!/bin/bash
# make board-test: the firmware on the emulated board, end to end.
#
# A network namespace holds the host side of the board's link (a tap device, 192.168.77.1)
# and a peer device (videophoned with a test pattern and a 440 Hz tone). QEMU runs in that
# namespace, so nothing the board sends leaves it. Inside the board (scenarios/board-call.sh)
# the firmware is installed under systemd, the gpio-sim button is pressed, and the call runs
# with vivid video and snd-aloop sound. board_check.py then checks both ends.
#   board/qemu/board-test.sh [BIN_DIR]      (BIN_DIR: a release build, static Swift runtime;
#                                            packaged with toolchain/deb.sh and installed with dpkg)
#   [BOARD_SMOKE=1] BOARD_ARCH=arm64 board/qemu/board-test.sh BIN_DIR ARM64_BIN_DIR
#       the arm64 board (Debian 13, qemu-system-aarch64 -M virt): ARM64_BIN_DIR (make aarch64)
#       packaged as the arm64 .deb and installed there; the shorter scenario
#       (scenarios/board-call-short.sh); the peer is BIN_DIR's videophoned, as above.
#       BOARD_SMOKE=1: only boot, install, start (Type=notify) and devices; no call.
#   BOARD_ECHO=1 board/qemu/board-test.sh BIN_DIR   (make board-echo) the x86 scenario, then
#       the speakerphone's echo call against a talking peer, judged by board_check.py echo.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(cd "${1:-$ROOT/.build/release}" && pwd)
ARCH=${BOARD_ARCH:-amd64}
case "$ARCH" in
amd64) BOARD_BIN=$BIN; SCENARIO=board-call.sh ;;
arm64) BOARD_BIN=$(cd "${2:-$ROOT/.build-aarch64/dist}" && pwd); SCENARIO=board-call-short.sh ;;
*) echo "board: unknown BOARD_ARCH $ARCH (amd64 or arm64)" >&2; exit 2 ;;
esac

SHARE=$(mktemp -d /tmp/videophone-board.XXXXXX)
NS=vpboard$$
PEER_PID=""; TALKER_PID=""; POLL_PID=""; SCREENS_PID=""
cleanup() {
    # Each may have ended already: under set -e a failed kill must not end the cleanup
    # before the peer and the namespace are gone.
    for pid in "$POLL_PID" "$SCREENS_PID" "$PEER_PID" "$TALKER_PID"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

SMOKE=${BOARD_SMOKE:-0}
[ "$SMOKE" = 1 ] && touch "$SHARE/smoke-only"
# BOARD_ECHO=1 (x86): the scenario ends with the speakerphone's echo call.
ECHO=${BOARD_ECHO:-0}
[ "$ECHO" = 1 ] && touch "$SHARE/echo-call"
# The board installs the firmware as a user would: the Debian package of this build.
"$ROOT/toolchain/deb.sh" "$ARCH" "$BOARD_BIN" "$SHARE"
DEB=$(ls "$SHARE"/videophone_*_"$ARCH".deb)
# The board's pieces (cached), with the package's dependencies in its rootfs; outside the
# namespace: may need the apt mirror.
if [ "$ARCH" = arm64 ]; then
    "$ROOT/board/qemu/build-arm64.sh" "$DEB" >/dev/null
else
    "$ROOT/board/qemu/build.sh" >/dev/null
fi
# The same package, checked before it goes on the board: lintian, contents, scripts.
DEB_CHECK=0
"$ROOT/toolchain/deb-check.sh" "$DEB" > "$SHARE/deb-check.log" 2>&1 || DEB_CHECK=1
grep -E '^(FAIL|deb-check)' "$SHARE/deb-check.log" || true
python3 "$ROOT/board/qemu/board_check.py" tone "$SHARE/mic.wav"

if [ "$ARCH" = amd64 ]; then
# The GPIO shim against both libgpiod APIs: Debian 12's 1.6, and 2.x compiled in from the
# sources PyPI's gpiod sdist carries (Debian 12 has no libgpiod 2).
GPIOD2=$HOME/.cache/videophone-board/gpiod-2.5.0
if [ ! -e "$GPIOD2/lib/chip.c" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: gpiod==2.5.0 -d "$tmp"
    tar -xzf "$tmp"/gpiod-2.5.0.tar.gz -C "$(dirname "$GPIOD2")"
    rm -rf "$tmp"
fi
# The shim loads libgpiod with dlopen, as the daemon does: v1 finds Debian's libgpiod.so.2
# (the package depends on it); v2 the 2.x library built here, named by VIDEOPHONE_DLOPEN_GPIOD.
SHIM="$ROOT/board/qemu/gpio-shim-test.c $ROOT/Sources/CGPIOD/gpiod.c $ROOT/Sources/CLoader/loader.c -I$ROOT/Sources/CLoader/include -I$ROOT/Sources/CGPIOD/include"
gcc -O2 -Wall -o "$SHARE/gpio-shim-test-v1" $SHIM
gcc -O2 -Wall -shared -fPIC -D_GNU_SOURCE -DGPIOD_API_VERSION_STR="\"$(cat "$GPIOD2/libgpiod-version.txt")\"" \
    -I"$GPIOD2/include" -I"$GPIOD2/lib" -Wl,-soname,libgpiod.so.3 -o "$SHARE/libgpiod.so.3" "$GPIOD2"/lib/*.c
gcc -O2 -Wall -I"$GPIOD2/include" -o "$SHARE/gpio-shim-test-v2" $SHIM
# The echo call (scenarios/board-call.sh): the far end's speech with 5 s silences, a
# near-end talker, and the room that sits between the board's speaker and microphone.
"$ROOT/toolchain/apt-ensure.sh" espeak-ng
python3 "$ROOT/board/qemu/board_check.py" speech "$SHARE/far.wav" en-us 5 \
    "This is the far end speaking, through the loudspeaker of the board. Not one word of it should come back to me."
python3 "$ROOT/board/qemu/board_check.py" speech "$SHARE/near.wav" en-gb+f3 0 \
    "Hello, yes, I can hear you quite well now, the weather is lovely."
cp "$BIN/videophone-bench" "$SHARE/"
fi

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev tap0 mode tap
ip -n "$NS" addr add 192.168.77.1/24 dev tap0
ip -n "$NS" link set tap0 up

mkdir -p "$SHARE/peer"
cat > "$SHARE/peer.toml" <<CONF
[device]
name = "peer"
state_directory = "$SHARE/peer"
auto_answer = true
[signalling]
listen = "192.168.77.1:8090"
token = "peer-token"
[control]
socket = "$SHARE/peer/control.sock"
[network]
addresses = ["192.168.77.1"]
[video]
width = 320
height = 240
fps = 15
bitrate_kbps = 300
[audio]
source = "tone"
sink = "counting"
[[peer]]
name = "board"
url = "http://192.168.77.2:8080"
token = "peer-to-board"
accept_token = "board-to-peer"
CONF
ip netns exec "$NS" "$BIN/videophoned" --config "$SHARE/peer.toml" 2>"$SHARE/peer.log" &
PEER_PID=$!
# The far end of the echo call: a talker (speech, then silence, looped), audio only.
if [ "$ARCH" = amd64 ]; then
mkdir -p "$SHARE/talker"
cat > "$SHARE/talker.toml" <<CONF
[device]
name = "talker"
state_directory = "$SHARE/talker"
auto_answer = true
[signalling]
listen = "192.168.77.1:8091"
token = "talker-token"
[control]
socket = "$SHARE/talker/control.sock"
[network]
addresses = ["192.168.77.1"]
[video]
source = "none"
[audio]
source = "talker"
talker_file = "$SHARE/far.wav"
echo_attenuation_db = 80
echo_cancellation = false
noise_suppression = false
gain_control = false
[[peer]]
name = "board"
url = "http://192.168.77.2:8080"
token = "talker-to-board"
accept_token = "board-to-talker"
CONF
ip netns exec "$NS" "$BIN/videophoned" --config "$SHARE/talker.toml" 2>"$SHARE/talker.log" &
TALKER_PID=$!
fi
# The peer's figures, once a second, while the board runs (its call ends before QEMU does).
( while sleep 1; do
      ip netns exec "$NS" "$BIN/videophonectl" --socket "$SHARE/peer/control.sock" status --json 2>/dev/null && echo
  done > "$SHARE/peer-status.jsonl" ) &
POLL_PID=$!

# QEMU's screendumps (through QMP) when the scenario asks; a call from the peer for the ringing screen.
if [ "$ARCH" = amd64 ]; then
    rm -f "$SHARE/qmp.sock"
    python3 "$ROOT/board/qemu/board_screens.py" serve "$SHARE" "$SHARE/peer/control.sock" "$BIN/videophonectl" > "$SHARE/screens.log" 2>&1 &
    SCREENS_PID=$!
fi

echo "board: booting the $ARCH board (software emulation, a few minutes)"
status=0
start=$(date +%s)
timeout=1200; [ "$ARCH" = arm64 ] && timeout=1200; [ "$ECHO" = 1 ] && timeout=1800
ip netns exec "$NS" env BOARD_TAP=tap0 BOARD_ARCH="$ARCH" BOARD_DEB="$DEB" BOARD_TIMEOUT="${BOARD_TIMEOUT:-$timeout}" \
    "$ROOT/board/qemu/boot.sh" "$ROOT/board/qemu/scenarios/$SCENARIO" "$SHARE" || status=$?
echo "board: the $ARCH board ran for $(( $(date +%s) - start )) s"
width=640; [ "$ARCH" = arm64 ] && width=320     # board-call-short.sh's lighter picture
if [ "$SMOKE" = 1 ]; then
    cat "$SHARE/board-resources.txt" 2>/dev/null || true
else
    python3 "$ROOT/board/qemu/board_check.py" check "$SHARE" "$width" || status=1
fi
[ -e "$SHARE/threads.log" ] && { echo "board: the daemon's threads in the call (top -H):"; tail -n 16 "$SHARE/threads.log"; }
if [ "$ARCH" = amd64 ]; then
    python3 "$ROOT/board/qemu/board_screens.py" check "$SHARE" || status=1
    [ "$ECHO" = 1 ] && { python3 "$ROOT/board/qemu/board_check.py" echo "$SHARE" || status=1; }
fi
[ "$DEB_CHECK" -eq 0 ] || { echo "board: the package failed deb-check ($SHARE/deb-check.log)"; status=1; }
echo "board: results in $SHARE"
exit $status
