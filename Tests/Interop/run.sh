#!/bin/bash
# Runs the interop tests (Chromium, aiortc) inside a network namespace of their own:
# Chromium gathers no loopback candidates, so the device and the peers get addresses on a
# veth whose other end sits in a second, empty namespace. The default route (Chromium
# gathers on the default-route interface only when it hides addresses behind mDNS) and
# the multicast route point into that veth: no packet can leave the two namespaces.
#   Tests/Interop/run.sh [BIN_DIR] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-.build/debug}
shift || true
NS=vp-interop-$$
FAR=vp-interop-far-$$
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$FAR" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip netns add "$FAR"
ip -n "$NS" link set lo up
ip -n "$NS" link add vpa type veth peer name vpb netns "$FAR"
ip -n "$NS" addr add 10.77.0.1/24 dev vpa
ip -n "$NS" addr add 10.77.0.2/24 dev vpa
ip -n "$NS" link set vpa up
ip -n "$FAR" link set vpb up
ip -n "$NS" route add default dev vpa
ip -n "$NS" route add 224.0.0.0/4 dev vpa
export VIDEOPHONE_BIN="$PWD/$BIN"
if [ "${1:-}" = "bench" ]; then
    shift
    ip netns exec "$NS" "${PYTHON:-python3}" Tests/Interop/bench_interop.py "$@"
else
    ip netns exec "$NS" "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider Tests/Interop "$@"
fi
