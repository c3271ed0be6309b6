#!/bin/sh
# Runs the cross-built aarch64 test bundle under qemu-aarch64 user emulation, with the
# sysroot as the loader prefix (QEMU_LD_PREFIX, inherited by child processes that go through
# binfmt_misc) and the arm64 Swift runtime on the library path.
#   run-tests-qemu.sh BUILD_DIR [FILTER]
# The tests use Swift Testing only; FILTER (a regex on test names) narrows them.
# IntegrationTests are left out by default (VP_AARCH64_SKIP, a regex; empty runs them too):
# they start daemons and hold a call against wall-clock timeouts (e.g. 4 s for a daemon to
# answer on its control socket) that emulation at a fraction of native speed cannot meet;
# they run natively in make test and on the emulated board.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
vp_trap_errors
dir="$1"; filter="${2:-}"
bundle="$dir/videophonePackageTests.xctest"
vp_step="run tests"
[ -x "$bundle" ] || vp_fail "no test bundle at $bundle (cross-build the tests first)"
command -v qemu-aarch64-static >/dev/null || vp_fail "qemu-aarch64-static missing (apt-get install qemu-user-static)"

# binfmt_misc is not mounted at boot on this kind of machine: mount it and enable the arm64
# handler so that arm64 processes the tests start run too (best effort; the bundle itself
# runs through qemu-aarch64-static directly either way).
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ -e /proc/sys/fs/binfmt_misc/status ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi

export QEMU_LD_PREFIX="$VP_SYSROOT"
runtime="$VP_SYSROOT/usr/libexec/swift/lib/swift/linux"
# Emulation is several times slower: timing-bound waits in the tests stretch by this factor.
scale="${VIDEOPHONE_TEST_TIME_SCALE:-6}"
run() {
    qemu-aarch64-static -E LD_LIBRARY_PATH="$runtime" -E VIDEOPHONE_TEST_TIME_SCALE="$scale" "$bundle" "$@"
}
start=$(date +%s)
echo "toolchain/cross: Swift Testing under qemu-aarch64${filter:+ (filter: $filter)}" >&2
skip="${VP_AARCH64_SKIP-IntegrationTests}"
rc=0
run --testing-library swift-testing ${filter:+--filter "$filter"} ${skip:+--skip "$skip"} || rc=$?
echo "toolchain/cross: aarch64 tests took $(( $(date +%s) - start )) s, exit $rc" >&2
[ "$rc" -eq 0 ] || vp_fail "the aarch64 unit tests failed under qemu-aarch64 (exit $rc)"
