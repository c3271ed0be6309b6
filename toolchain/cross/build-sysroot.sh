#!/bin/sh
# The target: a Debian 13 (trixie) arm64 sysroot with the -dev:arm64 packages the firmware
# links, plus the arm64 Swift runtime (static and shared) from the same swiftlang version as
# the compiler chroot. Packages come from this machine's Debian mirror through a private apt
# state (the machine's own apt architectures and status are left alone) and are unpacked
# with dpkg-deb: no maintainer script runs, so no emulation is needed to build it.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
vp_trap_errors

hash=$(vp_hash sysroot-v1 "$VP_SYSROOT_SUITE" "$VP_SWIFT_SUITE" "$VP_ARM64_DEV_PACKAGES")
if vp_stamp_ok "$VP_SYSROOT" "$hash"; then exit 0; fi

vp_begin "host tools" "apt, dpkg-deb, the archive keyring"
"$here/../apt-ensure.sh" debian-archive-keyring || vp_fail "could not install debian-archive-keyring (apt)"
mirror=$(vp_mirror) || { vp_step="mirror"; vp_fail "no Debian mirror in /etc/apt/sources.list*; set VP_DEBIAN_MIRROR"; }

# apt with its own state for one suite, arm64 only.  vp_apt SUITE ARGS...
vp_apt() {
    suite="$1"; shift
    st="$VP_TOOLCHAIN_CACHE/apt-$suite-arm64"
    mkdir -p "$st/lists/partial" "$st/archives/partial" "$st/prefs.d"
    [ -f "$st/status" ] || : > "$st/status"
    echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$st/sources.list"
    apt-get -q -o Debug::NoLocking=1 \
        -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
        -o Dir::State="$st" -o Dir::State::Lists="$st/lists" -o Dir::State::status="$st/status" \
        -o Dir::Cache="$st" -o Dir::Cache::Archives="$st/archives" \
        -o Dir::Etc::SourceList="$st/sources.list" -o Dir::Etc::SourceParts="$st/none" \
        -o Dir::Etc::Preferences="$st/none" -o Dir::Etc::PreferencesParts="$st/prefs.d" \
        -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false \
        -o APT::Sandbox::User=root "$@"
}

vp_begin "arm64 packages" "$VP_SYSROOT_SUITE arm64: $VP_ARM64_DEV_PACKAGES"
vp_apt "$VP_SYSROOT_SUITE" update >/dev/null || vp_fail "apt-get update for $VP_SYSROOT_SUITE arm64 from $mirror failed"
# shellcheck disable=SC2086
vp_apt "$VP_SYSROOT_SUITE" install -y --download-only $VP_ARM64_DEV_PACKAGES >"$VP_TOOLCHAIN_CACHE/apt-sysroot.log" 2>&1 \
    || { tail -n 20 "$VP_TOOLCHAIN_CACHE/apt-sysroot.log" >&2; vp_fail "could not download the arm64 -dev packages (log: $VP_TOOLCHAIN_CACHE/apt-sysroot.log)"; }

vp_begin "arm64 swift runtime" "swiftlang and libswiftlang arm64 from $VP_SWIFT_SUITE"
vp_apt "$VP_SWIFT_SUITE" update >/dev/null || vp_fail "apt-get update for $VP_SWIFT_SUITE arm64 from $mirror failed"
swift_debs="$VP_TOOLCHAIN_CACHE/apt-$VP_SWIFT_SUITE-arm64/archives"
( cd "$swift_debs" && vp_apt "$VP_SWIFT_SUITE" download swiftlang libswiftlang >/dev/null ) \
    || vp_fail "could not download swiftlang:arm64 from $VP_SWIFT_SUITE"

vp_begin "unpack" "into $VP_SYSROOT"
rm -rf "$VP_SYSROOT" "$VP_SYSROOT.tmp"
mkdir -p "$VP_SYSROOT.tmp/usr/bin" "$VP_SYSROOT.tmp/usr/sbin" "$VP_SYSROOT.tmp/usr/lib"
for d in bin sbin lib; do ln -s "usr/$d" "$VP_SYSROOT.tmp/$d"; done
for deb in "$VP_TOOLCHAIN_CACHE/apt-$VP_SYSROOT_SUITE-arm64/archives"/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$VP_SYSROOT.tmp" \
        || vp_fail "could not unpack $deb"
done
# From swiftlang only the target's runtime and modules (Debian keeps them under
# /usr/libexec/swift/lib); the compiler itself is the chroot's amd64 one.
for deb in "$swift_debs"/libswiftlang_*_arm64.deb; do
    [ -f "$deb" ] || vp_fail "missing $deb"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$VP_SYSROOT.tmp" --wildcards \
        --exclude='./usr/libexec/swift/lib/swift/host' --exclude='./usr/libexec/swift/lib/swift/pm' \
        --exclude='./usr/libexec/swift/lib/swift/embedded' --exclude='./usr/libexec/swift/lib/swift/migrator' \
        './usr/libexec/swift/lib/swift*' './usr/libexec/swift/lib/clang' 2>/dev/null || true
done
for deb in "$swift_debs"/swiftlang_*_arm64.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$VP_SYSROOT.tmp" --wildcards \
        --exclude='./usr/libexec/swift/lib/swift/host' --exclude='./usr/libexec/swift/lib/swift/pm' \
        --exclude='./usr/libexec/swift/lib/swift/embedded' --exclude='./usr/libexec/swift/lib/swift/migrator' \
        './usr/libexec/swift/lib/swift*' './usr/libexec/swift/lib/clang' \
        || vp_fail "could not unpack the arm64 Swift runtime from $deb"
done
[ -f "$VP_SYSROOT.tmp/usr/libexec/swift/lib/swift_static/linux/libswiftCore.a" ] \
    || vp_fail "the arm64 swiftlang package has no static runtime at usr/libexec/swift/lib/swift_static/linux"
# The driver also looks in the usual places (usr/lib/swift{,_static}) for swiftrt.o.
ln -s ../libexec/swift/lib/swift "$VP_SYSROOT.tmp/usr/lib/swift"
ln -s ../libexec/swift/lib/swift_static "$VP_SYSROOT.tmp/usr/lib/swift_static"

# Absolute symlinks (e.g. libfoo.so -> /lib/...) would point at the host: make them relative.
find "$VP_SYSROOT.tmp" -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    rel=$(realpath -m --relative-to="$(dirname "$link")" "$VP_SYSROOT.tmp$target")
    ln -sfn "$rel" "$link"
done
[ -e "$VP_SYSROOT.tmp/lib/ld-linux-aarch64.so.1" ] || vp_fail "no arm64 dynamic loader in the sysroot"
mv "$VP_SYSROOT.tmp" "$VP_SYSROOT"
vp_stamp_write "$VP_SYSROOT" "$hash"
echo "toolchain/cross: sysroot ready: $(du -sh "$VP_SYSROOT" | cut -f1)" >&2
