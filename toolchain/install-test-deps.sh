#!/bin/sh
# Installs what the tests need beyond the build: Debian's Chromium and its driver,
# iproute2 for the network namespaces, nftables and coturn for the NAT test bed, promtool
# (prometheus) and systemd-analyze (systemd), mosquitto and its clients and nats-server (the MQTT brokers of Tests/MQTT),
# redis-server (the user database a pool of coturns shares, Tests/NAT),
# and Selenium, aiortc and pytest from PyPI. A no-op when present.
set -eu

"$(dirname "$0")/apt-ensure.sh" chromium chromium-driver iproute2 prometheus systemd coturn nftables openssl espeak-ng mosquitto mosquitto-clients nats-server redis-server

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import selenium, aiortc, pytest, numpy" 2>/dev/null; then
    echo "toolchain: installing selenium, aiortc, pytest and numpy from PyPI" >&2
    "$PYTHON" -m pip install -q --disable-pip-version-check "selenium>=4.20" "aiortc>=1.9" "pytest>=7" "numpy>=1.24" 2>&1 | grep -v "Running pip as the 'root' user" >&2 || true
    "$PYTHON" -c "import selenium, aiortc, pytest, numpy"
fi
