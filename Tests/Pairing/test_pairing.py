"""Pairing on the namespace test bed: two real videophoned in two network namespaces
joined by a veth, provisioned with no peer at all. `videophonectl pair-code` on each and
`videophonectl add-peer` with the other's code on each is the only provisioning; then
the button calls the other device, which knows the caller by name (its accept token),
and video flows both ways. Also: a damaged code is refused and writes nothing; a broken
drop-in keeps the daemon on its last good configuration.

Run as root: VIDEOPHONE_BIN=.build/debug python3 -m pytest -q Tests/Pairing"""
import os
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vptest import BIN, Namespaces, NSDevice, sh, wait  # noqa: E402

VIDEO = "[video]\nwidth = 320\nheight = 180\nfps = 15\nbitrate_kbps = 300\n"
SCALE = float(os.environ.get("VIDEOPHONE_TEST_TIME_SCALE", "1"))


def ctl(device, *args):
    config = os.path.join(device.dir, "videophone.toml")
    return subprocess.run([os.path.join(BIN, "videophonectl"), *args, "--config", config],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def bed():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    spaces = Namespaces()
    work = tempfile.mkdtemp(prefix="vp-pairing-")
    n = os.getpid() % 200 + 20
    net = f"10.98.{n}"
    a_ns, b_ns = spaces.ns("pa"), spaces.ns("pb")
    sh("ip", "link", "add", "eth0", "netns", a_ns, "type", "veth", "peer", "name", "eth0", "netns", b_ns)
    for ns, ip in ((a_ns, f"{net}.1"), (b_ns, f"{net}.2")):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
    devices = []

    def device(name, ns, ip):
        d = NSDevice(work, ns, name, ip, extra=VIDEO)
        devices.append(d)
        assert wait(lambda: d.state() == "idle", 10 * SCALE), d.log()
        return d

    yield device, (a_ns, f"{net}.1"), (b_ns, f"{net}.2")
    for d in devices:
        d.stop()
    spaces.close()


def test_two_devices_pair_with_two_commands_and_call(bed):
    device, (a_ns, a_ip), (b_ns, b_ip) = bed
    alice, bob = device("alice", a_ns, a_ip), device("bob", b_ns, b_ip)

    code_a = ctl(alice, "pair-code")
    code_b = ctl(bob, "pair-code")
    assert code_a.returncode == 0 and code_b.returncode == 0, code_a.stderr + code_b.stderr
    line_a, line_b = code_a.stdout.strip(), code_b.stdout.strip()
    assert line_a.startswith("vp1:") and "\n" not in line_a

    # A truncated or mistyped code is refused, and nothing is written.
    peers_d = os.path.join(alice.dir, "peers.d")
    before = sorted(os.listdir(peers_d))
    for bad in (line_b[:-6], line_b[:20] + ("A" if line_b[20] != "A" else "B") + line_b[21:]):
        r = ctl(alice, "add-peer", bad)
        assert r.returncode == 1 and ("truncated" in r.stderr or "checksum" in r.stderr), r.stderr
    assert sorted(os.listdir(peers_d)) == before

    r = ctl(alice, "add-peer", line_b)
    assert r.returncode == 0, r.stderr
    assert "name = \"bob\"" in r.stdout and f"url = \"http://{b_ip}:8080\"" in r.stdout and "reloaded" in r.stdout, r.stdout
    assert "********" in r.stdout  # secrets are not echoed
    r = ctl(bob, "add-peer", line_a)
    assert r.returncode == 0, r.stderr

    # The button calls the other device; it knows the caller by its paired name.
    assert alice.ctl("press").returncode == 0
    assert wait(lambda: (bob.stat("inbound-rtp", "video", "framesReceived") or 0) > 10, 15 * SCALE), alice.log() + bob.log()
    assert wait(lambda: (alice.stat("inbound-rtp", "video", "framesReceived") or 0) > 10, 15 * SCALE), alice.log() + bob.log()
    assert bob.status().get("peer") == "alice" and alice.status().get("peer") == "bob"
    assert alice.ctl("hangup").returncode == 0
    assert wait(lambda: alice.state() == "idle" and bob.state() == "idle", 10 * SCALE)

    # And the other way round.
    assert bob.ctl("call", "alice").returncode == 0
    assert wait(lambda: alice.status().get("peer") == "bob" and alice.state() == "in-call", 15 * SCALE), alice.log() + bob.log()
    bob.ctl("hangup")
    assert wait(lambda: alice.state() == "idle" and bob.state() == "idle", 10 * SCALE)

    # A broken drop-in: the reload is refused and the daemon keeps the peers it had.
    with open(os.path.join(peers_d, "zz-broken.toml"), "w") as f:
        f.write("[[peer]]\nname = \"carol\"\nurl = 17\n")
    r = alice.ctl("reload")
    assert r.returncode == 1 and "zz-broken.toml:3: peer.url" in r.stderr, r.stderr
    os.kill(alice.pid, 1)  # SIGHUP: the same
    assert wait(lambda: alice.log().count("zz-broken.toml:3: peer.url") >= 2, 5 * SCALE), alice.log()
    assert alice.ctl("press").returncode == 0
    assert wait(lambda: bob.status().get("peer") == "alice", 15 * SCALE), alice.log() + bob.log()
    alice.ctl("hangup")
