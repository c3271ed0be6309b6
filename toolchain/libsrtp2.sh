#!/bin/sh
# Builds libsrtp2 on OpenSSL's crypto, from Debian's own source package, as a static library
# the firmware links instead of Debian's binary libsrtp2.
#
# Why: Debian builds libsrtp2 on NSS. Its AES-CTR and HMAC create an NSS context per packet,
# about 70 heap allocations per 720p frame sent and 3 per packet received, twice the CPU of
# OpenSSL's, and NSS's seven libraries in every process. The firmware links OpenSSL for DTLS
# already. Same upstream source, same Debian patches, a different crypto backend.
#
#   toolchain/libsrtp2.sh native       → $VP_TOOLCHAIN_CACHE/libsrtp2-openssl-ARCH (this machine's)
#   toolchain/libsrtp2.sh cross-arm64  → $VP_SYSROOT/opt/videophone-libsrtp2 (the cross sysroot)
#   toolchain/libsrtp2.sh prefix       prints the native prefix (the Makefile's PKG_CONFIG_PATH)
#
# Each prefix holds include/srtp2, lib/libsrtp2-openssl.a and lib/pkgconfig/libsrtp2.pc; the
# Makefile and toolchain/cross/aarch64.sh put that .pc first on PKG_CONFIG_PATH. The archive's
# own name keeps the linker from picking Debian's libsrtp2 in a directory searched earlier.
# A stamp of the inputs skips the build when nothing changed (about 15 s when it runs).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/cross/common.sh"

mode="${1:-native}"
version="2.5.0"
debian_rev="3"
orig_sha256="8a43ef8e9ae2b665292591af62aa1a4ae41e468b6d98d8258f91478735da4e09"
debian_sha256="3a3cafa12033d32cd0d5ad4d78f102bc6d998f7d67a17f262c436d0734865af4"
cflags="-O2 -g -fPIC -fstack-protector-strong -D_FORTIFY_SOURCE=2"

native_prefix="$VP_TOOLCHAIN_CACHE/libsrtp2-openssl-$(dpkg --print-architecture)"
case "$mode" in
prefix)
    echo "$native_prefix"; exit 0 ;;
native)
    arch=$(dpkg --print-architecture)
    prefix="$native_prefix"; pc_prefix="$prefix"
    "$here/apt-ensure.sh" libssl-dev pkg-config curl make gcc patch
    host_flags=""; cc="gcc" ;;
cross-arm64)
    arch=arm64
    prefix="$VP_SYSROOT/opt/videophone-libsrtp2"; pc_prefix="/opt/videophone-libsrtp2"
    [ -d "$VP_SYSROOT/usr/include/openssl" ] || { echo "toolchain/libsrtp2: no arm64 sysroot at $VP_SYSROOT (toolchain/cross/build-sysroot.sh builds it)" >&2; exit 1; }
    "$here/apt-ensure.sh" gcc-aarch64-linux-gnu curl make patch
    host_flags="--host=aarch64-linux-gnu"; cc="aarch64-linux-gnu-gcc --sysroot=$VP_SYSROOT" ;;
*)
    echo "usage: $0 native|cross-arm64|prefix" >&2; exit 2 ;;
esac

hmac_src="$here/libsrtp2/hmac_sha1_prehashed.c"
stamp=$(vp_hash "$version-$debian_rev" "$orig_sha256" "$debian_sha256" "$cflags" "$cc" "$(sha256sum "$0")" "$(sha256sum "$hmac_src" "$here/libsrtp2/hmac_check.c")")
if vp_stamp_ok "$prefix" "$stamp"; then exit 0; fi

vp_begin "libsrtp2 ($arch)" "Debian's libsrtp2 $version-$debian_rev source on OpenSSL → $prefix"
src="$VP_TOOLCHAIN_CACHE/src"
mkdir -p "$src"
fetch() {  # FILE SHA256
    if [ -f "$src/$1" ] && echo "$2  $src/$1" | sha256sum -c --status; then return 0; fi
    mirror=$(vp_mirror) || vp_fail "no Debian mirror in /etc/apt/sources.list*; set VP_DEBIAN_MIRROR"
    curl -fsSL --retry 3 -o "$src/$1.part" "$mirror/pool/main/libs/libsrtp2/$1" \
        || vp_fail "could not download $mirror/pool/main/libs/libsrtp2/$1"
    echo "$2  $src/$1.part" | sha256sum -c --status || vp_fail "$1: checksum mismatch (expected $2)"
    mv "$src/$1.part" "$src/$1"
}
fetch "libsrtp2_$version.orig.tar.gz" "$orig_sha256"
fetch "libsrtp2_$version-$debian_rev.debian.tar.xz" "$debian_sha256"

work=$(mktemp -d /tmp/videophone-libsrtp2.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$src/libsrtp2_$version.orig.tar.gz"
tar -C "$work" -xJf "$src/libsrtp2_$version-$debian_rev.debian.tar.xz"
cd "$work/libsrtp-$version"
while read -r patch; do
    case "$patch" in ''|'#'*) continue ;; esac
    patch -s -p1 < "../debian/patches/$patch" || vp_fail "Debian patch $patch does not apply"
done < ../debian/patches/series
# HMAC-SHA1 without a heap allocation per packet: OpenSSL 3's EVP_MAC, which the upstream
# back end uses, duplicates a digest context on every restart (libsrtp2/hmac_sha1_prehashed.c).
cp "$hmac_src" crypto/hash/hmac_ossl.c

vp_step="libsrtp2 ($arch): configure"
# shellcheck disable=SC2086
./configure -q $host_flags --enable-openssl --disable-pcap --prefix="$prefix" \
    CC="$cc" CFLAGS="$cflags" > "$work/configure.log" 2>&1 \
    || { tail -n 30 "$work/configure.log" >&2; vp_fail "configure failed"; }
vp_step="libsrtp2 ($arch): make"
make -s -j"$(nproc)" libsrtp2.a > "$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; vp_fail "make failed"; }

# The HMAC check runs for both architectures: natively, and as arm64 code under qemu-aarch64
# user emulation against the sysroot's OpenSSL (the board's own libcrypto).
vp_step="libsrtp2 ($arch): HMAC check"
headers="include/srtp.h crypto/include/auth.h crypto/include/cipher.h crypto/include/crypto_types.h"
mkdir -p "$work/check/srtp2"
# shellcheck disable=SC2086
cp $headers "$work/check/srtp2/"
$cc $cflags -I"$work/check" -I"$work/check/srtp2" "$here/libsrtp2/hmac_check.c" libsrtp2.a -lcrypto -o "$work/hmac_check" \
    || vp_fail "could not build toolchain/libsrtp2/hmac_check.c"
if [ "$mode" = cross-arm64 ]; then
    "$here/apt-ensure.sh" qemu-user-static
    set -- qemu-aarch64-static -L "$VP_SYSROOT" "$work/hmac_check"
else
    set -- "$work/hmac_check"
fi
"$@" || vp_fail "the allocation-free HMAC-SHA1 does not agree with OpenSSL's ($arch)"

rm -rf "$prefix"
mkdir -p "$prefix/include/srtp2" "$prefix/lib/pkgconfig"
# shellcheck disable=SC2086
cp $headers "$prefix/include/srtp2/"
cp libsrtp2.a "$prefix/lib/libsrtp2-openssl.a"
cat > "$prefix/lib/pkgconfig/libsrtp2.pc" <<EOF
# libsrtp2 $version (Debian $version-$debian_rev source) on OpenSSL, built by toolchain/libsrtp2.sh
prefix=$pc_prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libsrtp2
Description: SRTP (RFC 3711) on OpenSSL, static
Version: $version
Libs: -L\${libdir} -lsrtp2-openssl -lcrypto
Cflags: -I\${includedir}
EOF
vp_stamp_write "$prefix" "$stamp"
echo "toolchain/libsrtp2: built $prefix" >&2
