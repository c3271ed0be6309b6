#!/bin/sh
# Installs what the tests need beyond the build: Debian's Chromium and its driver,
# iproute2 for the network namespaces, nftables and coturn for the NAT test bed, promtool
# (prometheus) and systemd-analyze (systemd),
# and Selenium, aiortc and pytest from PyPI. A no-op when present.
set -eu

PACKAGES="chromium chromium-driver iproute2 prometheus systemd coturn nftables openssl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
    echo "toolchain: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import selenium, aiortc, pytest" 2>/dev/null; then
    echo "toolchain: installing selenium, aiortc and pytest from PyPI" >&2
    "$PYTHON" -m pip install -q --disable-pip-version-check "selenium>=4.20" "aiortc>=1.9" "pytest>=7" 2>&1 | grep -v "Running pip as the 'root' user" >&2 || true
    "$PYTHON" -c "import selenium, aiortc, pytest"
fi
