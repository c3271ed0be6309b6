#!/bin/sh
# Checks a built videophone .deb: lintian reports no error, it holds every file the board
# needs, the example config is a conffile, Depends names the linked and the dlopened C libraries (and no
# Swift runtime: it is linked in), the maintainer scripts create the user, enable the unit
# and purge the state, and the packaged daemon accepts the packaged example config.
#   toolchain/deb-check.sh DEB
set -u
deb="$1"
here="$(cd "$(dirname "$0")" && pwd)"
"$here/apt-ensure.sh" lintian binutils >/dev/null || { echo "deb-check: could not install lintian (apt)" >&2; exit 1; }
arch=$(dpkg-deb -f "$deb" Architecture)
failures=0; passes=0
check() {  # NAME STATUS DETAIL
    if [ "$2" -eq 0 ]; then passes=$((passes+1)); echo "ok   $1"; else failures=$((failures+1)); echo "FAIL $1: $3"; fi
}

# lintian: errors fail; warnings and notes are printed for the reader.
out=$(lintian --fail-on error --tag-display-limit 0 "$deb" 2>&1); rc=$?
out=$(echo "$out" | grep -v "running with root privileges")
[ -z "$out" ] || echo "$out" | sed 's/^/     lintian: /'
check "lintian has no errors" $rc "$(echo "$out" | grep '^E:' | head -n 5)"

files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./#/#')
for f in /usr/bin/videophoned /usr/bin/videophonectl \
         /lib/systemd/system/videophoned.service /usr/lib/sysusers.d/videophone.conf \
         /usr/lib/tmpfiles.d/videophone.conf /lib/udev/rules.d/60-videophone-gpio.rules \
         /usr/share/videophone/boards/raspberry-pi-4.toml /usr/share/videophone/boards/raspberry-pi-5.toml \
         /usr/share/videophone/boards/emulated.toml /etc/videophone/videophone.toml.example \
         /usr/share/bash-completion/completions/videophoned /usr/share/doc/videophone/copyright; do
    alt=$(echo "$f" | sed 's#^/lib/#/usr/lib/#')
    echo "$files" | grep -qx -e "$f" -e "$alt"; check "contains $f" $? "not in dpkg-deb -c"
done
echo "$files" | grep -qx /etc/videophone/videophone.toml; [ $? -ne 0 ]; check "does not ship the config itself" $? "videophone.toml is the user's"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"; dpkg-deb -e "$deb" "$tmp/ctl"
grep -qx /etc/videophone/videophone.toml.example "$tmp/ctl/conffiles"; check "example config is a conffile" $? "$(cat "$tmp/ctl/conffiles" 2>/dev/null)"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libx264 libopus0 libssl3 libasound2 libgpiod libmosquitto1 libwebrtc-audio-processing libv4l-0 libavcodec libc6; do
    echo "$depends" | grep -q "$lib"; check "Depends names $lib" $? "$depends"
done
# libsrtp2 is Debian's source built on OpenSSL and linked in (toolchain/libsrtp2.sh): no NSS.
! echo "$depends" | grep -q -e libsrtp2 -e libnss3; check "Depends names neither libsrtp2 nor NSS (libsrtp2 on OpenSSL, static)" $? "$depends"
[ -n "$depends" ] && ! echo "$depends" | grep -qi swift; check "Depends names no Swift runtime" $? "$depends"
needed=$(readelf -d "$tmp/root/usr/bin/videophoned" | grep NEEDED)
[ -n "$needed" ] && ! echo "$needed" | grep -q 'libswift\|libFoundation'; check "Swift runtime linked statically" $? "$needed"
# The board-only and display libraries are loaded with dlopen when the config uses them.
! echo "$needed" | grep -q 'libasound\|libv4l2\|libgpiod\|libavcodec\|libwebrtc'; check "board libraries not linked (dlopen)" $? "$needed"
grep -q systemd-sysusers "$tmp/ctl/postinst"; check "postinst creates the user (sysusers)" $? "no systemd-sysusers"
grep -q "deb-systemd-helper.*enable" "$tmp/ctl/postinst"; check "postinst enables the unit" $? "no enable"
grep -q "ConditionPathExists=/etc/videophone/videophone.toml" "$tmp/root/"*lib/systemd/system/videophoned.service; check "unit waits for the config" $? "no ConditionPathExists"
grep -q "rm -rf /var/lib/videophone" "$tmp/ctl/postrm"; check "purge removes the state" $? "postrm"
grep -q "deb-systemd-invoke stop" "$tmp/ctl/prerm"; check "removal stops the service" $? "prerm"

# The packaged daemon reads the packaged example with the packaged board profiles.
run=""
if [ "$arch" = arm64 ]; then
    . "$here/cross/common.sh"; run="qemu-aarch64-static -L $VP_SYSROOT"
fi
msg=$(VIDEOPHONE_BOARDS_DIR="$tmp/root/usr/share/videophone/boards" $run "$tmp/root/usr/bin/videophoned" \
      --check-config "$tmp/root/etc/videophone/videophone.toml.example" 2>&1); rc=$?
check "packaged daemon accepts the example config" $rc "$msg"

echo "deb-check $(basename "$deb"): $passes passed, $failures failed"
[ "$failures" -eq 0 ]
