#!/bin/bash
# make perf-profile: a 30 s two-way 720p30 call between two simulated devices on loopback.
# The caller (alice) runs under `perf record` (CPU profile, call graphs from frame pointers
# and DWARF-less unwinding of the Swift code); the callee (bob) runs under heaptrack (heap
# profile). Both devices do the same media work both ways, so the two profiles describe one
# device. Writes into .perf/profile-<time>/ and prints a one-line summary:
#   cpu.folded        folded stacks (speedscope or flamegraph.pl read them)
#   cpu-top.txt       functions by self and by inclusive share of the caller's samples
#   heap.txt          heaptrack_print's report (peak, allocations per second, top callers)
#   perf.data, heaptrack.*.zst, alice.log, bob.log
# PROFILE_SECONDS=N changes the call length. If the kernel does not allow perf
# (perf_event_paranoid, containers), the CPU profile comes from valgrind's callgrind on a
# 10 s call instead (instructions, not time) and the summary says so.
#   toolchain/perf-profile.sh [BIN_DIR]
set -euo pipefail
BIN=${1:-.build/release}
SECONDS_CALL=${PROFILE_SECONDS:-30}
cd "$(dirname "$0")/.."
toolchain/apt-ensure.sh linux-perf heaptrack valgrind

OUT=.perf/profile-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT/alice" "$OUT/bob"
OUT=$(cd "$OUT" && pwd)

read -r PA PB PM < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
for dev in alice bob; do
    if [ $dev = alice ]; then port=$PA; peer=bob; peerport=$PB; else port=$PB; peer=alice; peerport=$PA; fi
    cat > "$OUT/$dev.toml" <<EOF
[device]
name = "$dev"
state_directory = "$OUT/$dev"
auto_answer = true
[signalling]
listen = "127.0.0.1:$port"
token = "$dev-token"
[control]
socket = "$OUT/$dev/control.sock"
[network]
addresses = ["127.0.0.1"]
[video]
source = "test-pattern"
width = 1280
height = 720
fps = 30
bitrate_kbps = 2000
[audio]
source = "tone"
sink = "counting"
[[peer]]
name = "$peer"
url = "http://127.0.0.1:$peerport"
token = "$peer-token"
EOF
done
echo "[metrics]" >> "$OUT/alice.toml"
echo "listen = \"127.0.0.1:$PM\"" >> "$OUT/alice.toml"

PERF_OK=1
perf stat -e instructions true >/dev/null 2>&1 || PERF_OK=0
if [ $PERF_OK = 0 ]; then
    echo "perf-profile: this kernel does not allow perf (perf stat -e instructions true failed); CPU profile with callgrind on a 10 s call" >&2
    SECONDS_CALL=10
fi

pids=()
HEAPTRACK=
cleanup() {
    # heaptrack is a shell script: the daemon under it is its child, which gets the signal.
    if [ -n "$HEAPTRACK" ]; then
        for c in $(pgrep -P "$HEAPTRACK" 2>/dev/null); do
            [ "$(cat /proc/"$c"/comm 2>/dev/null)" = videophoned ] && kill -INT "$c" 2>/dev/null || true
        done
    fi
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

heaptrack -o "$OUT/heaptrack.bob" "$BIN/videophoned" --config "$OUT/bob.toml" >"$OUT/heaptrack.out" 2>"$OUT/bob.log" &
HEAPTRACK=$!
if [ $PERF_OK = 1 ]; then
    "$BIN/videophoned" --config "$OUT/alice.toml" 2>"$OUT/alice.log" &
    ALICE=$!
    pids+=($ALICE)
else
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN/videophoned" --config "$OUT/alice.toml" 2>"$OUT/alice.log" &
    ALICE=$!
    pids+=($ALICE)
fi
for dev in alice bob; do
    for _ in $(seq 200); do
        "$BIN/videophonectl" --socket "$OUT/$dev/control.sock" status >/dev/null 2>&1 && break
        sleep 0.1
    done
done

"$BIN/videophonectl" --socket "$OUT/alice/control.sock" call bob >/dev/null
sleep 1
if [ $PERF_OK = 1 ]; then
    # Every thread of the caller, 999 Hz, call graphs by frame pointer (Swift keeps them on
    # Linux; x264's assembly leaves its callers out of a few stacks).
    perf record -F 999 -g -p "$ALICE" -o "$OUT/perf.data" -- sleep "$SECONDS_CALL" 2>"$OUT/perf-record.log" >/dev/null
else
    sleep "$SECONDS_CALL"
fi
"$BIN/videophonectl" --socket "$OUT/alice/control.sock" status > "$OUT/alice-status.txt" 2>&1 || true
curl -s "http://127.0.0.1:$PM/metrics" > "$OUT/alice-metrics.txt" 2>/dev/null || true
"$BIN/videophonectl" --socket "$OUT/alice/control.sock" hangup >/dev/null 2>&1 || true
sleep 0.5
cleanup
pids=()
HEAPTRACK=
trap - EXIT

if [ $PERF_OK = 1 ]; then
    perf script -i "$OUT/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null | python3 toolchain/fold-stacks.py --folded "$OUT/cpu.folded" > "$OUT/cpu-top.txt"
else
    callgrind_annotate --inclusive=yes "$OUT/callgrind.out" > "$OUT/cpu-top.txt" 2>/dev/null || true
fi
heaptrack_print -f "$OUT"/heaptrack.bob.*.zst > "$OUT/heap.txt" 2>/dev/null || heaptrack_print "$OUT"/heaptrack.bob.* > "$OUT/heap.txt" 2>/dev/null || true

peak=$(grep -m1 "^peak heap memory consumption:" "$OUT/heap.txt" | sed 's/.*: *//' || true)
allocs=$(grep -m1 "^calls to allocation functions:" "$OUT/heap.txt" | sed 's/.*: *//' || true)
top=$(sed -n 's/^TOP3 //p' "$OUT/cpu-top.txt" 2>/dev/null || true)
if [ $PERF_OK = 1 ]; then
    echo "perf-profile: $OUT: ${SECONDS_CALL} s 720p30 call; alice CPU (perf): $top; bob heap (heaptrack): peak ${peak:-?}, allocations ${allocs:-?}"
else
    echo "perf-profile: $OUT: perf not allowed here; alice under callgrind for ${SECONDS_CALL} s (cpu-top.txt); bob heap (heaptrack): peak ${peak:-?}, allocations ${allocs:-?}"
fi
