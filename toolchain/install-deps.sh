#!/bin/sh
# Installs the Debian packages the build and the tests need, once.
# Called by every Makefile target; a no-op when everything is present.
set -eu

"$(dirname "$0")/apt-ensure.sh" pkg-config libx264-dev libopus-dev libssl-dev libasound2-dev libv4l-dev libgpiod-dev libwebrtc-audio-processing-dev libmosquitto-dev libavcodec-dev libdrm-dev zlib1g-dev
# libsrtp2 on OpenSSL, from Debian's source (Debian's binary is built on NSS): once, cached.
"$(dirname "$0")/libsrtp2.sh" native

if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "toolchain: swift is at /opt/swift/usr/bin; add it to PATH" >&2
    else
        echo "toolchain: Swift 6.2 or newer is required (https://swift.org/install)" >&2
    fi
    exit 1
fi
