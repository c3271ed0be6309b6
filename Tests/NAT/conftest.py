import os
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from testbed import TestBed, sh  # noqa: E402

BIN = os.environ.get("VIDEOPHONE_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug"))
TURN_USER, TURN_PASSWORD, REALM = "vp", "turn-secret", "videophone.test"


def wait(pred, timeout, interval=0.02):
    """Polls `pred` until it returns something true (returned) or `timeout` passes (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return None


class NSDevice:
    """videophoned in a namespace; talks HTTP through `ip netns exec curl`-free Python."""

    def __init__(self, workdir, namespace, name, ip, extra="", peers=(), bind_all=False):
        self.ns, self.name, self.ip = namespace, name, ip
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "control.sock")
        peers_toml = "".join(f'\n[[peer]]\nname = "{n}"\nurl = "{u}"\ntoken = "{t}"\n' for n, u, t in peers)
        config = f"""
[device]
name = "{name}"
state_directory = "{self.dir}/state"
auto_answer = true
[signalling]
listen = "{ip}:8080"
token = "{name}-token"
[control]
socket = "{self.socket}"
[network]
{"" if bind_all else f'addresses = ["{ip}"]'}
{extra}
{peers_toml}
"""
        path = os.path.join(self.dir, "videophone.toml")
        with open(path, "w") as f:
            f.write(config)
        self.logfile = os.path.join(self.dir, "log")
        env = dict(os.environ, VIDEOPHONE_LOG_LEVEL=os.environ.get("VIDEOPHONE_TEST_LOG_LEVEL", "info"))
        self.proc = subprocess.Popen(["ip", "netns", "exec", namespace, os.path.join(BIN, "videophoned"), "--config", path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        for _ in range(200):
            if os.path.exists(self.socket):
                break
            time.sleep(0.02)

    def ctl(self, *args):
        return subprocess.run([os.path.join(BIN, "videophonectl"), "--socket", self.socket, *args], capture_output=True, text=True, timeout=30)

    def status(self):
        import json
        r = self.ctl("status", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def stat(self, type_, kind, field):
        for s in self.status().get("call", {}).get("stats", []):
            if s.get("type") == type_ and (kind is None or s.get("kind") == kind):
                return s.get(field)
        return None

    def log(self):
        return open(self.logfile).read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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
       "-subj", "/CN=turn.videophone.test", "-keyout", key, "-out", cert)
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
