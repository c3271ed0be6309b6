#!/bin/sh
# The arm64 binaries as arm64 code under qemu-aarch64 user emulation (part of make test):
# both start, report their version, and the daemon reads a good config and rejects a bad
# one naming the file and line, as on a board. With BENCH (the arm64 videophone-bench), the
# echo canceller built against the sysroot's webrtc-audio-processing 1.x (AEC3) must cancel
# echo: ERLE >= 25 dB in one room over 8 s of far-end speech (espeak-ng runs on the host).
#   aarch64-smoke.sh DIST_DIR [BENCH]
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
repo="$(cd "$here/../.." && pwd)"
dist="$1"
bench="${2:-}"
"$here/../apt-ensure.sh" qemu-user-static binutils >/dev/null || { echo "aarch64-smoke: could not install qemu-user-static (apt)" >&2; exit 1; }
q="qemu-aarch64-static -L $VP_SYSROOT"
version=$(sed -n 's/.*static let version = "\([^"]*\)".*/\1/p' "$repo/Sources/BuildInfo/BuildInfo.swift")
passes=0; failures=0
check() {  # NAME STATUS DETAIL
    if [ "$2" -eq 0 ]; then passes=$((passes+1)); echo "ok   $1"; else failures=$((failures+1)); echo "FAIL $1: $3"; fi
}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

for b in videophoned videophonectl; do
    info=$(file -b "$dist/$b")
    echo "$info" | grep -q "ARM aarch64"; check "$b is an aarch64 executable" $? "$info"
    needed=$(readelf -d "$dist/$b" | grep NEEDED)
    echo "$needed" | grep -q 'libswift\|libFoundation\|libdispatch'; [ $? -ne 0 ]; check "$b links the Swift runtime statically" $? "$needed"
done
out=$($q "$dist/videophoned" --version 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^videophoned $version"; check "videophoned --version under qemu-aarch64" $? "exit $rc: $out"
out=$($q "$dist/videophonectl" --help 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "USAGE: videophonectl"; check "videophonectl --help under qemu-aarch64" $? "exit $rc: $out"

cp "$repo/toolchain/debian/videophone.toml.example" "$tmp/good.toml"
out=$(VIDEOPHONE_BOARDS_DIR="$repo/board/profiles" $q "$dist/videophoned" --check-config "$tmp/good.toml" 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "OK (device 'kitchen'"; check "--check-config accepts the example (raspberry-pi-4 profile)" $? "exit $rc: $out"
printf '[device]\nname = "x"\n\n[video]\nfps = "fast"\n' > "$tmp/bad.toml"
out=$($q "$dist/videophoned" --check-config "$tmp/bad.toml" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "bad.toml:5: video.fps"; check "--check-config rejects a bad file with file:line:key" $? "exit $rc: $out"

if [ -n "$bench" ]; then
    "$here/../apt-ensure.sh" espeak-ng >/dev/null || { echo "aarch64-smoke: could not install espeak-ng (apt)" >&2; exit 1; }
    out=$($q "$bench" --aec-check 25 2>&1); rc=$?
    echo "$out" | grep '^aec-check'
    [ $rc -eq 0 ] && echo "$out" | grep -q "aec-check: webrtc-audio-processing 1.x: .*: ok"
    check "AEC3 (webrtc-audio-processing 1.x) cancels echo: ERLE >= 25 dB" $? "exit $rc: $out"
fi

echo "aarch64-smoke: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
