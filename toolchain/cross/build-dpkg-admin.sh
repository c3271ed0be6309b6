#!/bin/sh
# A dpkg database describing the arm64 sysroot's packages (status, file lists with the
# sysroot's paths, shlibs and symbols files), for dpkg-shlibdeps --admindir: it computes
# the arm64 package's Depends from the libraries the binaries actually link, although the
# packages were only unpacked, never installed.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"
vp_trap_errors
admin="$VP_TOOLCHAIN_CACHE/dpkg-admin-arm64"
vp_begin "dpkg database" "for dpkg-shlibdeps over $VP_SYSROOT"
[ -f "$VP_SYSROOT/.videophone-stamp" ] || vp_fail "no sysroot at $VP_SYSROOT (run toolchain/cross/build-sysroot.sh)"
hash=$(vp_hash admin-v1 "$(cat "$VP_SYSROOT/.videophone-stamp")")
if vp_stamp_ok "$admin" "$hash"; then exit 0; fi
rm -rf "$admin"; mkdir -p "$admin/info" "$admin/updates"
echo arm64 > "$admin/arch"
echo 1 > "$admin/info/format"   # multiarch layout: M-A same packages are pkg:arch.*
: > "$admin/status"
ctl=$(mktemp -d)
for deb in "$VP_TOOLCHAIN_CACHE/apt-$VP_SYSROOT_SUITE-arm64/archives"/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package)
    ma=$(dpkg-deb -f "$deb" Multi-Arch)
    name="$pkg"; [ "$ma" = same ] && name="$pkg:arm64"
    dpkg-deb -f "$deb" >> "$admin/status"
    echo "Status: install ok installed" >> "$admin/status"
    echo >> "$admin/status"
    dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's#^\./#/#' -e 's#/$##' | grep -v '^$' |
        sed "s#^/#$VP_SYSROOT/#" > "$admin/info/$name.list"
    rm -rf "$ctl"/*; dpkg-deb -e "$deb" "$ctl"
    for f in shlibs symbols; do [ -f "$ctl/$f" ] && cp "$ctl/$f" "$admin/info/$name.$f"; done
done
rm -rf "$ctl"
# The Status line must follow Package for dpkg: normalise field order through dpkg itself.
dpkg-query --admindir="$admin" -W -f='${Package}\n' >/dev/null 2>&1 || vp_fail "dpkg cannot read the generated status file"
vp_stamp_write "$admin" "$hash"
