#!/bin/sh
# Cross-builds the firmware for aarch64 (Debian 13 arm64 boards) with Debian's own Swift:
#   toolchain/cross/aarch64.sh build [OUTDIR]   videophoned and videophonectl, release,
#                                                Swift runtime linked statically
#   toolchain/cross/aarch64.sh test [FILTER]    cross-builds the unit tests and runs them
#                                                under qemu-aarch64 user emulation
#   toolchain/cross/aarch64.sh bench [ARGS...]   cross-builds videophone-bench (release) and,
#                                                with ARGS, runs it under qemu-aarch64, e.g.
#                                                `bench --aec 10` (webrtc-audio-processing 1.x)
#   toolchain/cross/aarch64.sh toolchain        only builds the caches (see common.sh)
#   toolchain/cross/aarch64.sh swift ARGS...    swift ARGS with the aarch64 SDK, in the chroot
# Run from the repo's top folder. Scratch folder: .build-aarch64 (sid chroot paths).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
repo="$(cd "$here/../.." && pwd)"
export VP_REPO="$repo"
# A git worktree keeps its objects in the main clone: bind that too, for --version's commit.
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
case "$common" in "$repo"/*|"") ;; *) export VP_EXTRA_BINDS="$common" ;; esac

[ "$(id -u)" -eq 0 ] || { echo "toolchain/cross: needs root (debootstrap, chroot, mounts); run with sudo" >&2; exit 1; }
"$here/build-chroot.sh"
"$here/build-sysroot.sh"
"$here/build-sdk.sh"
"$here/../libsrtp2.sh" cross-arm64
vp_trap_errors

# pkg-config inside the chroot reads the sysroot's arm64 .pc files, with paths rewritten into it;
# libsrtp2 on OpenSSL (toolchain/libsrtp2.sh) first.
vp_swift() {
    vp_chroot_run "$repo" env \
        PKG_CONFIG_SYSROOT_DIR="$VP_SYSROOT" \
        PKG_CONFIG_LIBDIR="$VP_SYSROOT/opt/videophone-libsrtp2/lib/pkgconfig:$VP_SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig:$VP_SYSROOT/usr/share/pkgconfig" \
        PKG_CONFIG_PATH="$VP_SYSROOT/opt/videophone-libsrtp2/lib/pkgconfig:$VP_SYSROOT/usr/lib/aarch64-linux-gnu/pkgconfig:$VP_SYSROOT/usr/share/pkgconfig" \
        VP_APM_PKGCONFIG=webrtc-audio-processing-1 \
        swift "$@" --swift-sdks-path "$VP_SDK_DIR" --swift-sdk "$VP_SDK_NAME" --scratch-path "$repo/.build-aarch64"
}

# user emulation for arm64 binaries: qemu-aarch64 through binfmt_misc (the F flag makes it
# work inside chroots too), or qemu-aarch64-static -L SYSROOT explicitly.
vp_qemu_ready() {
    "$here/../apt-ensure.sh" qemu-user-static binfmt-support || vp_fail "could not install qemu-user-static (apt)"
}

cmd="${1:-build}"
case "$cmd" in
toolchain)
    ;;
swift)
    # Any swift command with the aarch64 SDK, e.g. `aarch64.sh swift build --target X`.
    shift; vp_step="swift $*"; vp_swift "$@" ;;
build)
    out="${2:-$repo/.build-aarch64/dist}"
    vp_begin "cross-build" "videophoned, videophonectl for aarch64 (release, static Swift runtime)"
    for product in videophoned videophonectl; do
        vp_swift build -c release --static-swift-stdlib --product "$product" \
            || vp_fail "swift build --product $product for aarch64 failed"
    done
    mkdir -p "$out"
    bin="$repo/.build-aarch64/aarch64-unknown-linux-gnu/release"
    cp "$bin/videophoned" "$bin/videophonectl" "$out/"
    echo "toolchain/cross: built $out/videophoned $out/videophonectl" >&2
    ;;
bench)
    # videophone-bench as arm64 code: the echo canceller against the sysroot's
    # webrtc-audio-processing 1.x (AEC3), which Debian 12's host cannot give. Its talkers
    # come from the host's espeak-ng (run natively: the exec leaves the emulator).
    shift
    vp_begin "cross-build bench" "videophone-bench for aarch64 (release, static Swift runtime)"
    vp_swift build -c release --static-swift-stdlib --product videophone-bench \
        || vp_fail "swift build --product videophone-bench for aarch64 failed"
    [ "$#" -gt 0 ] || exit 0
    vp_qemu_ready
    "$here/../apt-ensure.sh" espeak-ng || vp_fail "could not install espeak-ng (apt)"
    vp_begin "run bench" "videophone-bench $* under qemu-aarch64 user emulation"
    qemu-aarch64-static -L "$VP_SYSROOT" "$repo/.build-aarch64/aarch64-unknown-linux-gnu/release/videophone-bench" "$@" \
        || vp_fail "videophone-bench $* under qemu-aarch64 failed"
    ;;
test)
    # Debian's swiftlang ships the _Testing_Foundation cross-import module but not its
    # library, and every test target that imports Testing and Foundation links it. The
    # firmware's tests use none of its symbols (Foundation attachments), so an empty library
    # of that name satisfies the linker; a test that did use one would fail to link, loudly.
    overlay="$VP_SYSROOT/usr/libexec/swift/lib/swift/linux/lib_Testing_Foundation.so"
    if [ ! -f "$overlay" ]; then
        vp_begin "testing overlay" "empty $overlay (missing from Debian's swiftlang)"
        vp_chroot_run / /usr/libexec/swift/bin/clang -target aarch64-linux-gnu --sysroot="$VP_SYSROOT" -fuse-ld=lld -shared -nostdlib \
            -Wl,-soname,lib_Testing_Foundation.so -o "$overlay" -x c /dev/null || vp_fail "could not link $overlay"
    fi
    vp_begin "cross-build tests" "the unit test bundle for aarch64 (debug)"
    vp_swift build --build-tests || vp_fail "swift build --build-tests for aarch64 failed"
    [ "${VP_BUILD_ONLY:-}" = 1 ] && exit 0
    vp_qemu_ready
    vp_begin "run tests" "under qemu-aarch64 user emulation"
    "$here/run-tests-qemu.sh" "$repo/.build-aarch64/aarch64-unknown-linux-gnu/debug" "${2:-}"
    ;;
*)
    echo "usage: $0 build [OUTDIR] | test [FILTER] | bench [ARGS...] | toolchain | swift ARGS..." >&2; exit 2 ;;
esac
