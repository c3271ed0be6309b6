#!/bin/sh
# The compiler: a Debian sid amd64 chroot with Debian's swiftlang (6.2.x), git and pkg-config.
# Built once into $VP_TOOLCHAIN_CACHE/sid-chroot; rebuilt from scratch when absent or stale.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
vp_trap_errors

packages="swiftlang libc6-dev g++ git pkg-config ca-certificates"
hash=$(vp_hash chroot-v1 "$VP_SWIFT_SUITE" "$packages")
if vp_stamp_ok "$VP_CHROOT" "$hash"; then exit 0; fi

vp_begin "host tools" "debootstrap for the compiler chroot"
"$here/../apt-ensure.sh" debootstrap debian-archive-keyring util-linux || vp_fail "could not install debootstrap (apt)"
mirror=$(vp_mirror) || { vp_step="mirror"; vp_fail "no Debian mirror in /etc/apt/sources.list*; set VP_DEBIAN_MIRROR"; }

if [ ! -f "$VP_CHROOT/.debootstrap-done" ]; then
vp_begin "sid chroot" "debootstrap $VP_SWIFT_SUITE amd64 from $mirror into $VP_CHROOT (a few minutes)"
rm -rf "$VP_CHROOT" "$VP_CHROOT.tmp"
mkdir -p "$VP_TOOLCHAIN_CACHE"
log="$VP_TOOLCHAIN_CACHE/debootstrap-chroot.log"
if ! debootstrap --variant=minbase --arch=amd64 "$VP_SWIFT_SUITE" "$VP_CHROOT.tmp" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    [ -f "$VP_CHROOT.tmp/debootstrap/debootstrap.log" ] && tail -n 20 "$VP_CHROOT.tmp/debootstrap/debootstrap.log" >&2
    vp_fail "debootstrap of $VP_SWIFT_SUITE failed (log: $log)"
fi
touch "$VP_CHROOT.tmp/.debootstrap-done"
mv "$VP_CHROOT.tmp" "$VP_CHROOT"
fi

vp_begin "swiftlang" "apt-get install $packages in the chroot (≈600 MB download)"
# The machine's mirror may be a frozen snapshot whose sid Release has expired.
echo 'Acquire::Check-Valid-Until "false";' > "$VP_CHROOT/etc/apt/apt.conf.d/99videophone"
cp /etc/resolv.conf "$VP_CHROOT/etc/resolv.conf" 2>/dev/null || true
# git reads github.com addresses from the local package mirror, as on the host.
git config --system --get-regexp '^url\.' > "$VP_TOOLCHAIN_CACHE/gitconfig-urls" 2>/dev/null || true
VP_REPO= vp_chroot_run / /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null" \
    || vp_fail "apt-get install $packages in the $VP_SWIFT_SUITE chroot failed"
rm -f "$VP_CHROOT/etc/gitconfig"
while read -r key value; do
    chroot "$VP_CHROOT" git config --system --add "$key" "$value"
done < "$VP_TOOLCHAIN_CACHE/gitconfig-urls"
chroot "$VP_CHROOT" git config --system --add safe.directory '*'
# (the driver finds its runtime through $ORIGIN, which needs /proc: run it as builds will)
version=$(VP_REPO= vp_chroot_run / swift --version 2>&1 | grep "Swift version" | head -n1)
case "$version" in
    *"Swift version $VP_SWIFT_VERSION_PREFIX"*) ;;
    *) vp_fail "the chroot's swift is not $VP_SWIFT_VERSION_PREFIX: $version" ;;
esac
echo "toolchain/cross: compiler ready: $version" >&2
vp_stamp_write "$VP_CHROOT" "$hash"
