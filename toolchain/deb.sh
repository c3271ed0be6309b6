#!/bin/sh
# Builds videophone_VERSION_ARCH.deb with debhelper from binaries built beforehand.
#   toolchain/deb.sh ARCH BINDIR OUTDIR
# ARCH is amd64 (native, this machine's libraries) or arm64 (cross: the sysroot of
# toolchain/cross, whose dpkg database gives dpkg-shlibdeps the arm64 libraries' versions).
# The packaging is toolchain/debian; the unit, sysusers and udev files come from systemd/.
set -eu
arch="$1"; bindir="$2"; out="$3"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
fail() { echo "toolchain/deb: $arch: $*" >&2; exit 1; }

"$here/apt-ensure.sh" debhelper dpkg-dev fakeroot || fail "could not install debhelper (apt)"
version=$(sed -n 's/.*static let version = "\([^"]*\)".*/\1/p' "$repo/Sources/BuildInfo/BuildInfo.swift")
[ -n "$version" ] || fail "no version in Sources/BuildInfo/BuildInfo.swift"
for b in videophoned videophonectl; do [ -x "$bindir/$b" ] || fail "no $bindir/$b (build it first)"; done
mkdir -p "$out"
out=$(cd "$out" && pwd); bindir=$(cd "$bindir" && pwd)

shlibdeps_args=""
run=""
case "$arch" in
amd64) ;;
arm64)
    . "$here/cross/common.sh"
    "$here/apt-ensure.sh" binutils-aarch64-linux-gnu qemu-user-static || fail "could not install the arm64 binutils (apt)"
    "$here/cross/build-dpkg-admin.sh" || fail "no dpkg database for the arm64 sysroot"
    shlibdeps_args="--admindir=$VP_TOOLCHAIN_CACHE/dpkg-admin-arm64 -l$VP_SYSROOT/usr/lib/aarch64-linux-gnu"
    run="qemu-aarch64-static -L $VP_SYSROOT"
    ;;
*) fail "unknown architecture (amd64 or arm64)" ;;
esac

# Libraries videophoned loads with dlopen when the config uses them (libasound, libv4l2,
# libgpiod, libavcodec, webrtc-audio-processing: Sources/CLoader) are not NEEDED, so
# dpkg-shlibdeps cannot see them. Their sonames are marked in the binary; the dpkg
# database's shlibs files give each one's package and minimum version for this
# architecture. They go in Depends (an appliance package: the board's parts need them).
infodir=/var/lib/dpkg/info
[ "$arch" = arm64 ] && infodir="$VP_TOOLCHAIN_CACHE/dpkg-admin-arm64/info"
dlopen_deps=""
for so in $(strings -a "$bindir/videophoned" | sed -n 's/^VP_DLOPEN_SONAME=//p' | sort -u); do
    name=${so%%.so.*}; major=${so##*.so.}
    dep=$(cat "$infodir"/*.shlibs 2>/dev/null | awk -v n="$name" -v v="$major" '$1 == n && $2 == v && NF >= 3 { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }')
    [ -n "$dep" ] || fail "no package in $infodir provides $so (dlopened by videophoned)"
    dlopen_deps="${dlopen_deps:+$dlopen_deps, }$dep"
done
[ -n "$dlopen_deps" ] || fail "no dlopened library marked in $bindir/videophoned (VP_DLOPEN_SONAME=)"

work="$repo/.build-deb/$arch"
src="$work/videophone-$version"
rm -rf "$work"; mkdir -p "$src/stage/boards" "$src/stage/completions" "$out"
cp -r "$here/debian" "$src/debian"
cp "$repo/systemd/videophoned.service" "$src/debian/videophone.videophoned.service"
cp "$repo/systemd/videophone.sysusers" "$src/debian/videophone.sysusers"
cp "$repo/systemd/60-videophone-gpio.rules" "$src/debian/videophone.videophone-gpio.udev"
mv "$src/debian/videophone.toml.example" "$src/stage/"
cp "$bindir/videophoned" "$bindir/videophonectl" "$src/stage/"
cp "$repo"/board/profiles/*.toml "$src/stage/boards/"
cp "$repo/README.md" "$src/stage/"
for tool in videophoned videophonectl; do
    for sh in bash zsh fish; do
        $run "$bindir/$tool" --generate-completion-script $sh > "$src/stage/completions/$tool.$sh" \
            || fail "$tool --generate-completion-script $sh failed"
    done
    # bash-completion sources these files: a #! line means nothing there (lintian warns).
    sed -i '1{/^#!/d}' "$src/stage/completions/$tool.bash"
done
# The changelog carries the version and the commit; it is generated, never edited.
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
cat > "$src/debian/changelog" <<CL
videophone ($version) unstable; urgency=medium

  * Firmware $version, built from commit $commit.

 -- videophone firmware team <firmware@videophone.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}")
CL

cd "$src"
log="$work/dpkg-buildpackage.log"
if ! VP_SHLIBDEPS_ARGS="$shlibdeps_args" VP_DLOPEN_DEPENDS="$dlopen_deps" dpkg-buildpackage -b -us -uc -d --host-arch="$arch" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "dpkg-buildpackage failed (log: $log)"
fi
deb="$work/videophone_${version}_${arch}.deb"
[ -f "$deb" ] || fail "dpkg-buildpackage made no $deb"
cp "$deb" "$out/"
echo "toolchain/deb: $out/videophone_${version}_${arch}.deb ($(du -k "$deb" | cut -f1) KiB)" >&2
