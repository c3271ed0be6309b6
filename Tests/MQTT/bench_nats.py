"""Reconnect after the loss of a NATS node (make bench): a three-node nats-server cluster
(JetStream, MQTT listener with TLS), the device's node killed, and that node leads the
MQTT session stream (the worst case: a new MQTT connect anywhere waits until JetStream
has re-elected that stream's leader). Each run is a fresh cluster; runs alternate a
device with `[broker] standby = true` (a second connection already up to another node)
and one without (one connection: reconnect after the loss).

Usage: VIDEOPHONE_BIN=.build/release python3 Tests/MQTT/bench_nats.py [RUNS]"""
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import TestBed, nats_node_loss  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def spread(xs):
    xs = sorted(xs)
    return f"median {statistics.median(xs):.2f} s (min {xs[0]:.2f}, max {xs[-1]:.2f}, n={len(xs)})"


def main():
    got = {True: ([], []), False: ([], [])}
    for i in range(RUNS):
        for standby in (True, False):
            bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-nats-")
            os.chmod(work, 0o755)
            try:
                took, call, _ = nats_node_loss(bed, work, standby)
                got[standby][0].append(took)
                got[standby][1].append(call)
            finally:
                bed.close()
                shutil.rmtree(work, ignore_errors=True)
    for standby in (True, False):
        name = "standby = true " if standby else "one connection"
        print(f"{name}: on the next node {spread(got[standby][0])}; b's call to a up {spread(got[standby][1])}")


if __name__ == "__main__":
    main()
