import os
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from testbed import TestBed, sh  # noqa: E402
from vptest import NSDevice, wait  # noqa: E402,F401  (shared with Tests/Abuse; test_nat and bench_nat import them from here)
TURN_USER, TURN_PASSWORD, REALM = "vp", "turn-secret", "videophone.test"


def caller_and_callee(bed, workdir, extra_a, extra_b, nat_a=("eim", "eif"), nat_b=("eim", "eif"), bind_all=False, prepare=None):
    """Two hosts, each behind its own NAT on the WAN: b listens (its NAT forwards 8080 to it),
    a has b as its peer. `prepare(host_a)` runs before the devices start. Returns
    (a, b, host_a)."""
    host_a, ip_a, _ = bed.site(1, *nat_a)
    host_b, ip_b, public_b = bed.site(2, *nat_b, forwarded_tcp=(8080,))
    if prepare:
        prepare(host_a)
    b = NSDevice(workdir, host_b, "b", ip_b, extra=extra_b)
    a = NSDevice(workdir, host_a, "a", ip_a, extra=extra_a, peers=[("b", f"http://{public_b}:8080", "b-token")], bind_all=bind_all)
    return a, b, host_a


def start_coturn(bed, workdir):
    cert, key = os.path.join(workdir, "turn.crt"), os.path.join(workdir, "turn.key")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
       "-subj", "/CN=turn.videophone.test", "-addext", "subjectAltName=IP:10.200.0.1,DNS:turn.videophone.test",
       "-keyout", key, "-out", cert)
    conf = os.path.join(workdir, "turnserver.conf")
    with open(conf, "w") as f:
        f.write(f"""listening-ip=10.200.0.1
relay-ip=10.200.0.1
listening-port=3478
tls-listening-port=5349
min-port=49152
max-port=49999
realm={REALM}
lt-cred-mech
user={TURN_USER}:{TURN_PASSWORD}
fingerprint
cert={cert}
pkey={key}
no-cli
no-dtls
simple-log
log-file={os.path.join(workdir, "turn.log")}
""")
    proc = subprocess.Popen(["ip", "netns", "exec", bed.wan, "turnserver", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


@pytest.fixture
def bed():
    b = TestBed()
    yield b
    b.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="videophone-nat-")
    yield d
