#!/bin/sh
# Installs the Debian packages the build and the tests need, once.
# Called by every Makefile target; a no-op when everything is present.
set -eu

PACKAGES="pkg-config libx264-dev libopus-dev libsrtp2-dev libssl-dev libasound2-dev libv4l-dev libgpiod-dev"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "toolchain: installing$missing" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "toolchain: swift is at /opt/swift/usr/bin; add it to PATH" >&2
    else
        echo "toolchain: Swift 6.2 or newer is required (https://swift.org/install)" >&2
    fi
    exit 1
fi
