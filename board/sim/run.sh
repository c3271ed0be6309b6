#!/bin/bash
# The simulated board: two devices on this machine (alice and bob, configs beside this
# script), alice calls bob, and the terminal shows live figures from both until Ctrl-C.
set -euo pipefail
BIN=${1:-.build/release}
cd "$(dirname "$0")/../.."
mkdir -p .state/alice .state/bob

pids=()
cleanup() {
    trap - EXIT INT TERM
    "$BIN/videophonectl" --socket .state/alice/control.sock hangup >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo
    echo "stopped; daemon logs are in .state/alice.log and .state/bob.log"
}
trap cleanup EXIT INT TERM

for dev in alice bob; do
    "$BIN/videophoned" --config "board/sim/$dev.toml" 2>".state/$dev.log" &
    pids+=($!)
done
for dev in alice bob; do
    for _ in $(seq 100); do
        "$BIN/videophonectl" --socket ".state/$dev/control.sock" status >/dev/null 2>&1 && break
        sleep 0.05
    done
done

echo "alice calls bob ..."
"$BIN/videophonectl" --socket .state/alice/control.sock call bob
# Both screens are simulated ([display] output = "simulated"): a PNG of each every 5 s.
shots=.state/screens
mkdir -p "$shots"
echo "screenshots of both screens every 5 s: $PWD/$shots/alice.png and $PWD/$shots/bob.png"
last_shot=0
while true; do
    now=$(date +%s)
    if (( now - last_shot >= 5 )); then
        last_shot=$now
        for dev in alice bob; do
            "$BIN/videophonectl" --socket ".state/$dev/control.sock" screenshot "$shots/$dev.png" >/dev/null 2>&1 || true
        done
    fi
    out=$("$BIN/videophonectl" --socket .state/alice/control.sock status; echo; "$BIN/videophonectl" --socket .state/bob/control.sock status)
    clear 2>/dev/null || printf '\033[H\033[2J'
    echo "videophone simulated board: two devices on loopback, 720p30 H.264 + Opus both ways (Ctrl-C to stop)"
    echo
    echo "$out"
    echo
    echo "screens (every 5 s): $PWD/$shots/alice.png $PWD/$shots/bob.png"
    sleep 1
done
