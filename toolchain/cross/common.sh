# Shared by the toolchain/cross scripts (sourced, not run).
# Everything they build is a cache outside the repo, rebuilt when absent:
#   $VP_TOOLCHAIN_CACHE/sid-chroot      sid amd64 chroot with Debian's swiftlang (the compiler)
#   $VP_TOOLCHAIN_CACHE/sysroot-arm64   Debian 13 arm64 sysroot: libc, the -dev:arm64 packages,
#                                       sid's arm64 Swift runtime (same version as the compiler)
#   $VP_TOOLCHAIN_CACHE/sdk             the Swift SDK bundle pointing at that sysroot
# Each step leaves a stamp holding a hash of its inputs; a changed input or a missing stamp
# rebuilds that step (and the ones after it) from scratch.

VP_TOOLCHAIN_CACHE="${VP_TOOLCHAIN_CACHE:-${HOME:-/root}/.cache/videophone-toolchain}"
VP_CHROOT="$VP_TOOLCHAIN_CACHE/sid-chroot"
VP_SYSROOT="$VP_TOOLCHAIN_CACHE/sysroot-arm64"
VP_SDK_DIR="$VP_TOOLCHAIN_CACHE/sdk"
VP_SDK_NAME="videophone-aarch64"
# The compiler and the arm64 runtime come from the same source package, pinned here.
VP_SWIFT_SUITE="${VP_SWIFT_SUITE:-sid}"
VP_SYSROOT_SUITE="${VP_SYSROOT_SUITE:-trixie}"
VP_SWIFT_VERSION_PREFIX="6.2"

# The C libraries the firmware links (Package.swift's system library targets), as -dev:arm64.
VP_ARM64_DEV_PACKAGES="libc6-dev libstdc++-14-dev libgcc-14-dev linux-libc-dev libssl-dev libsrtp2-dev libx264-dev libopus-dev libv4l-dev libasound2-dev libgpiod-dev libmosquitto-dev libwebrtc-audio-processing-dev zlib1g-dev libavcodec-dev libdrm-dev"

vp_step=""
vp_fail() {
    echo "toolchain/cross: step '${vp_step:-?}' failed: $*" >&2
    vp_reported=1
    exit 1
}
vp_begin() {
    vp_step="$1"
    echo "toolchain/cross: [$vp_step] $2" >&2
}
# On an unexpected error (set -e), name the step that was running.
vp_trap_errors() {
    trap 'rc=$?; [ $rc -eq 0 ] || [ -n "${vp_reported:-}" ] || echo "toolchain/cross: step '"'"'${vp_step:-?}'"'"' failed (exit $rc); see the messages above" >&2' EXIT
}

# The Debian mirror this machine's apt already uses (never a hard-coded host).
# VP_DEBIAN_MIRROR overrides.
vp_mirror() {
    if [ -n "${VP_DEBIAN_MIRROR:-}" ]; then echo "$VP_DEBIAN_MIRROR"; return; fi
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
        grep -E '/debian/?$' | grep -v security | head -n1)
    if [ -z "$m" ]; then
        m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' |
            grep -E '/debian/?$' | grep -v security | head -n1)
    fi
    [ -n "$m" ] || return 1
    echo "${m%/}"
}

vp_stamp_ok() {  # DIR HASH
    [ -f "$1/.videophone-stamp" ] && [ "$(cat "$1/.videophone-stamp")" = "$2" ]
}
vp_stamp_write() { echo "$2" > "$1/.videophone-stamp"; }
vp_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# Runs a command inside the sid chroot, in a private mount namespace (the bind mounts vanish
# with it, even on failure): /proc, /dev, the repo and the cache at their host paths, and
# the local Swift package mirror that git reads github.com addresses from, and
# VP_EXTRA_BINDS (space-separated folders, e.g. a worktree's git common dir).
#   vp_chroot_run WORKDIR CMD...
vp_chroot_run() {
    wd="$1"; shift
    unshare --mount --propagation private /bin/sh -eu -c '
        root="$1"; cache="$2"; repo="$3"; wd="$4"; shift 4
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        for d in "$cache" "$repo" /opt/swift-packages ${VP_EXTRA_BINDS:-}; do
            # Never the host root: that would turn the chroot into the host.
            case "$d" in ""|/) continue ;; esac
            [ -d "$d" ] || continue
            mkdir -p "$root$d"
            mount --bind "$d" "$root$d"
        done
        exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            LANG=C.UTF-8 ${VP_APM_PKGCONFIG:+VP_APM_PKGCONFIG=$VP_APM_PKGCONFIG} \
            /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$wd" "$@"
    ' vp-chroot "$VP_CHROOT" "$VP_TOOLCHAIN_CACHE" "${VP_REPO-$PWD}" "$wd" "$@"
}
