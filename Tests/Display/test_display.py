"""The screen end to end: two real videophoned in two network namespaces joined by a veth,
each with the simulated (off-screen) display. `videophonectl screenshot` writes PNGs that
this test reads back with zlib alone: bob's idle screen shows its name where status says
the text is; in a call bob's screen is alice's test pattern filling the screen, and it
moves between two shots; when alice's stream stops the last frame stays, then
"video paused"; after the call the idle screen returns.

Run as root: VIDEOPHONE_BIN=.build/debug python3 -m pytest -q Tests/Display"""
import os
import signal
import struct
import sys
import tempfile
import time
import zlib

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vptest import Namespaces, NSDevice, sh, wait  # noqa: E402

SCALE = float(os.environ.get("VIDEOPHONE_TEST_TIME_SCALE", "1"))
W, H = 640, 360
EXTRA = f"""
[video]
width = 640
height = 360
fps = 15
bitrate_kbps = 600
[display]
output = "simulated"
mode = "{W}x{H}"
"""
IDLE_BACKGROUND = (0x10, 0x20, 0x2C)


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) from an 8-bit RGB PNG, checking every CRC."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i, idat, width, height = 8, b"", 0, 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind}"
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        i += 12 + n
    raw = zlib.decompress(idat)
    stride = 1 + width * 3
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0, "the writer uses filter 0 only"
        rows.append([tuple(line[1 + 3 * x:4 + 3 * x]) for x in range(width)])
    return width, height, rows


def shot(device, name):
    path = os.path.join(device.dir, name)
    r = device.ctl("screenshot", path)
    assert r.returncode == 0, r.stderr
    return read_png(path)


def luma(p):
    return (299 * p[0] + 587 * p[1] + 114 * p[2]) // 1000


@pytest.fixture
def bed():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    spaces = Namespaces()
    work = tempfile.mkdtemp(prefix="vp-display-")
    n = os.getpid() % 200 + 20
    net = f"10.97.{n}"
    a_ns, b_ns = spaces.ns("da"), spaces.ns("db")
    sh("ip", "link", "add", "eth0", "netns", a_ns, "type", "veth", "peer", "name", "eth0", "netns", b_ns)
    for ns, ip in ((a_ns, f"{net}.1"), (b_ns, f"{net}.2")):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
    bob = NSDevice(work, b_ns, "bob", f"{net}.2", extra=EXTRA)
    alice = NSDevice(work, a_ns, "alice", f"{net}.1", extra=EXTRA, peers=[("bob", bob.url, bob.token)])
    yield alice, bob
    for d in (alice, bob):
        try:
            os.kill(d.pid, signal.SIGCONT)
        except OSError:
            pass
        d.stop()
    spaces.close()


def test_screens_and_far_end_video(bed):
    alice, bob = bed
    assert wait(lambda: bob.state() == "idle" and alice.state() == "idle", 10 * SCALE), bob.log()

    # Idle: bob's name in the text region status reports, nothing white outside the regions.
    assert wait(lambda: bob.status().get("display", {}).get("shows") == "idle", 5 * SCALE), bob.status()
    regions = bob.status()["display"]["textRegions"]
    assert [r["text"] for r in regions] == ["bob", "ready"]
    w, h, rows = shot(bob, "idle.png")
    assert (w, h) == (W, H)
    title = regions[0]
    assert title["height"] >= H // 12, "title too small to read across a room"
    inside = outside = 0
    for y in range(0, H, 2):
        for x in range(0, W, 2):
            white = rows[y][x] == (255, 255, 255)
            within = any(r["x"] <= x < r["x"] + r["width"] and r["y"] <= y < r["y"] + r["height"] for r in regions)
            inside += white and within
            outside += white and not within
    assert inside > 100 and outside == 0, (inside, outside)
    assert rows[5][5] == IDLE_BACKGROUND

    # A call: bob's screen fills with alice's test pattern (grey bars under a tint, a moving square).
    r = alice.ctl("call", "bob")
    assert r.returncode == 0, r.stderr
    assert wait(lambda: (bob.status().get("call", {}).get("media", {}).get("videoFramesDecoded") or 0) > 10, 20 * SCALE), bob.log()
    _, _, one = shot(bob, "call-1.png")
    time.sleep(1.0)
    _, _, two = shot(bob, "call-2.png")
    for frame in (one, two):
        # Fills the screen: no letterbox or pillarbox bars (an edge row or column all black;
        # the pattern's darkest bar is black too, but never a whole edge), no idle background.
        black = (0, 0, 0)
        for y in (1, H - 2):
            assert not all(frame[y][x] == black for x in range(0, W, 5)), f"black bar along row {y}"
        for x in (1, W - 2):
            assert not all(frame[y][x] == black for y in range(0, H, 5)), f"black bar along column {x}"
        samples = [frame[y][x] for y in range(0, H - H // 4, 9) for x in range(0, W, 7)]
        assert sum(p == IDLE_BACKGROUND for p in samples) == 0
        # The colour bars: eight luma levels across the width, so a row spans dark to bright.
        row = [luma(frame[H // 8][x]) for x in range(0, W, 4)]
        assert max(row) - min(row) > 150, "no bars across the picture"
        levels = {v // 24 for v in row}
        assert len(levels) >= 5, f"the bar pattern is missing: {sorted(levels)}"
    changed = sum(a != b for ra, rb in zip(one, two) for a, b in zip(ra[::5], rb[::5]))
    assert changed > (W // 5) * H // 10, f"the picture did not move between shots ({changed} samples changed)"
    media = bob.status()["call"]["media"]
    assert media["videoDecodeErrors"] <= 2, media
    assert bob.status()["display"]["videoFlips"] > 10

    # The stream stops (alice frozen): the last frame stays, then "video paused".
    os.kill(alice.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        _, _, frozen = shot(bob, "frozen.png")
        assert sum(p == (0x30, 0x30, 0x30) for p in frozen[H // 2]) < W // 2, "paused too soon"
        assert wait(lambda: bob.status().get("display", {}).get("shows") == "video-paused", 6 * SCALE), bob.status().get("display")
        texts = [r["text"] for r in bob.status()["display"]["textRegions"]]
        assert "video paused" in texts, texts
    finally:
        os.kill(alice.pid, signal.SIGCONT)
    # It resumes.
    assert wait(lambda: bob.status().get("display", {}).get("shows") == "in-call", 10 * SCALE), bob.status().get("display")

    # Hang up: the idle screen returns.
    alice.ctl("hangup")
    assert wait(lambda: bob.status().get("display", {}).get("shows") == "idle", 10 * SCALE), bob.status().get("display")
    _, _, after = shot(bob, "after.png")
    assert after[5][5] == IDLE_BACKGROUND
    assert alice.alive() and bob.alive()
