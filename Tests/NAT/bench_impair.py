"""The impairment bed (make bench): a 2 Mbit/s 720p call between two devices behind their
NATs, with the link between the sites impaired by the user-space relay (impair.py: loss,
bursts, delay, jitter, outage) and `tc tbf` (rate). Each scenario lasts WINDOW seconds
after a clean start; figures are taken at the callee, from its own counters:

- freezes: gaps of more than 200 ms between complete frames (longest, total);
- frame rate, and the received bitrate as a share of the cap where there is one;
- time to adapt (the caller's sending rate under a cap) and to recover (target back
  over 1.5 Mbit/s once the cap lifts, or frames flowing again after an outage).

`bench_impair.py RUNS [SCENARIO]` runs each scenario RUNS times and prints median and
spread."""
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import caller_and_callee, start_coturn, wait  # noqa: E402
from testbed import TestBed, sh  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
ONLY = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
# Chromium ↔ Chromium under the same impairment, in the same run (the anchor), and device
# ↔ Chromium both ways; off with VIDEOPHONE_NO_ANCHOR=1.
ANCHOR = not os.environ.get("VIDEOPHONE_NO_ANCHOR")
WINDOW = 10.0
VIDEO = "[ice]\nstun_servers = [\"10.200.0.1:3478\"]\n[video]\nwidth = 1280\nheight = 720\nfps = 30\nbitrate_kbps = 2000"

# name: (relay settings, tbf rate in kbit/s towards the callee, outage seconds)
SCENARIOS = {
    "rate 2 → 1 Mbit/s": (None, 1000, 0),
    "2 Mbit/s → 300 kbit/s": (None, 300, 0),
    "5 % random loss": ("loss=0.05", None, 0),
    "2 % burst loss (bursts of 5)": ("loss=0.02 burst=5", None, 0),
    # A property of the path, set before the call starts: a step of 75 ms in the middle
    # of a call reads as a standing queue for the 10 s the base delay is remembered.
    "150 ms RTT ± 30 ms jitter": ("path: delay=75 jitter=30 reorder=1", None, 0),
    "outage of 3 s": (None, None, 3),
}


def spread(xs, unit="ms", scale=1.0):
    xs = sorted(x * scale for x in xs if x is not None)
    if not xs:
        return "-"
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"{statistics.median(xs):7.1f} {unit} ({q[0]:.1f}–{q[2]:.1f})"


def inbound(device):
    s = device.status()
    return next((x for x in s.get("call", {}).get("stats", []) if x["type"] == "inbound-rtp" and x["kind"] == "video"), {})


TRACE = os.environ.get("VIDEOPHONE_TRACE")


def trace(a, b, t0, seconds=float(os.environ.get("VIDEOPHONE_TRACE", "3") or 3)):
    """VIDEOPHONE_TRACE=1: the first seconds of the impairment every 50 ms, sender and
    callee side by side (where a freeze comes from)."""
    print("    t ms  target  delay  loss  queue ms  pacerQ  sent kbit/s  rtx  | frames  lost  nacks  plis  keyframes", flush=True)
    last = None
    while time.monotonic() - t0 < seconds:
        s, r = a.status(), b.status()
        o = next((x for x in s.get("call", {}).get("stats", []) if x["type"] == "outbound-rtp" and x["kind"] == "video"), {})
        i = next((x for x in r.get("call", {}).get("stats", []) if x["type"] == "inbound-rtp" and x["kind"] == "video"), {})
        now = time.monotonic()
        rate = (o.get("bytesSent", 0) - last[1]) * 8 / (now - last[0]) / 1000 if last else 0
        last = (now, o.get("bytesSent", 0))
        k = lambda v: f"{(v or 0) / 1000:6.0f}"  # noqa: E731
        print(f"  {(now - t0) * 1000:6.0f} {k(o.get('targetBitrate'))} {k(o.get('delayBasedEstimate'))} {k(o.get('lossBasedEstimate'))}"
              f"  {o.get('queueDelayMs') or 0:7.1f}  {o.get('pacerQueueBytes', 0):6d}  {rate:10.0f}  {o.get('retransmittedPacketsSent', 0):4d}"
              f"  | {i.get('framesReceived', 0):6d} {i.get('packetsLost', 0):5d} {i.get('nackCount', 0):6d} {i.get('pliCount', 0):5d} {i.get('keyFramesReceived', 0):5d}", flush=True)
        time.sleep(0.05)


def one_run(bed, relay, a, b, settings, cap, outage):
    wait(lambda: (a.stat("outbound-rtp", "video", "targetBitrate") or 0) >= 1_900_000, 40)
    time.sleep(2)
    before = inbound(b)
    if b.status().get("state") != "in-call" or not before.get("framesReceived"):
        print(f"  (a call did not start: callee {b.status().get('state')}; run skipped)\n{b.log()[-800:]}", flush=True)
        return None
    t0 = time.monotonic()
    if settings and not settings.startswith("path:"):
        relay.set(settings)
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "add", "dev", "w2", "root", "tbf", "rate", f"{cap}kbit", "burst", "16kb", "latency", "100ms")
    if outage:
        relay.set(f"outage={outage}")
    # Adapted: the bytes sent in a 250 ms window fit the cap (the same measure as for
    # Chromium below).
    adapt, last = None, (t0, a.stat("outbound-rtp", "video", "bytesSent") or 0)
    if TRACE:
        trace(a, b, t0)
    while time.monotonic() - t0 < WINDOW:
        time.sleep(0.25)
        now, sent = time.monotonic(), a.stat("outbound-rtp", "video", "bytesSent") or 0
        if cap and adapt is None and (sent - last[1]) * 8 / (now - last[0]) <= cap * 1000:
            adapt = now - t0
        last = (now, sent)
    after = inbound(b)
    elapsed = time.monotonic() - t0
    if settings and not settings.startswith("path:"):
        relay.clear()
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "del", "dev", "w2", "root")
    t1 = time.monotonic()
    recover = None
    if wait(lambda: (a.stat("outbound-rtp", "video", "targetBitrate") or 0) >= 1_500_000, 30):
        recover = time.monotonic() - t1
    d = lambda k: (after.get(k) or 0) - (before.get(k) or 0)  # noqa: E731
    return {
        "longest": after.get("longestFreezeDuration", 0) if d("freezeCount") else 0.0,
        "total": d("totalFreezesDuration"),
        "fps": d("framesReceived") / elapsed,
        "share": d("bytesReceived") * 8 / elapsed / (cap * 1000) if cap else None,
        "kbps": d("bytesReceived") * 8 / elapsed / 1000,
        "adapt": adapt,
        "recover": recover,
        "delay50": after.get("endToEndDelayP50Ms"),
        "delay95": after.get("endToEndDelayP95Ms"),
        # Where a freeze came from: losses, NACK rounds, keyframe rounds.
        "why": {k: d(k) for k in ("packetsLost", "nackCount", "retransmittedPacketsReceived", "pliCount", "framesDropped", "keyFramesReceived")},
    }


def scenario(name, settings, cap, outage, runs):
    bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-impair-")
    results = []
    turn = start_coturn(bed, work)
    try:
        a, b, _ = caller_and_callee(bed, work, VIDEO, VIDEO)
        relay = bed.impair(seed=7)
        if settings and settings.startswith("path:"):
            relay.set(settings[5:])
        try:
            a.ctl("call", "b")
            wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10)
            for _ in range(runs):
                # The longest freeze is a maximum over the call: a fresh call per run keeps
                # it to this run's window.
                r = one_run(bed, relay, a, b, settings, cap, outage)
                if r:
                    results.append(r)
                a.ctl("hangup")
                wait(lambda: b.status().get("state") == "idle", 5)
                time.sleep(0.5)
                a.ctl("call", "b")
                wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10)
        finally:
            relay.close()
            a.stop()
            b.stop()
    finally:
        turn.kill()
        bed.close()
    report(name, results, cap)


def report(name, results, cap):
    col = lambda k: [r[k] for r in results]  # noqa: E731
    print(f"{name:32s} longest freeze {spread(col('longest'), 'ms', 1000)}  total {spread(col('total'), 'ms', 1000)}  "
          f"{spread(col('fps'), 'fps')}  received {spread(col('kbps'), 'kbit/s')}"
          + (f" = {spread(col('share'), '%', 100)} of the cap  adapt {spread(col('adapt'), 'ms', 1000)}" if cap else "")
          + f"  recover {spread(col('recover'), 'ms', 1000)}  delay p50 {spread(col('delay50'))} p95 {spread(col('delay95'))}"
          + f"  (n={len(results)})", flush=True)
    for r in results:
        if "why" in r:
            print("    callee: " + ", ".join(f"{k} {v}" for k, v in r["why"].items()), flush=True)


def pattern_y4m(frames=300):
    """The device's simulated camera picture (TestPatternCamera: scrolling bars with a
    gradient, a bouncing square, a slowly changing tint) as a 720p30 Y4M file, for
    Chromium's fake camera: both sides of the comparison encode the same scene. Made once
    and kept in ~/.cache/videophone-bench."""
    import math
    import numpy as np
    path = os.path.expanduser(f"~/.cache/videophone-bench/pattern-720p30-{frames}.y4m")
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = 1280, 720
    levels = np.array([235, 210, 170, 145, 106, 81, 41, 16], dtype=np.uint8)
    bars = levels[(np.arange(2 * w) * 8 // w) % 8]
    rows = np.arange(h)
    with open(path + ".part", "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(1, frames + 1):
            shift = (n * 8) % w
            start = (shift + rows // 8) % w
            y = bars[start[:, None] + np.arange(w)[None, :]]
            side = h // 6
            period = 2 * (w - side)
            x = (n * 12) % period
            if x > w - side:
                x = period - x
            top = (h - side) // 2 + int((h // 4) * math.sin(n / 15))
            y[max(0, top):min(h, top + side), x:x + side] = 235
            u = np.full((h // 2, w // 2), 96 + n % 64, dtype=np.uint8)
            v = np.full((h // 2, w // 2), 160 - n % 64, dtype=np.uint8)
            f.write(b"FRAME\n")
            f.write(y.tobytes())
            f.write(u.tobytes())
            f.write(v.tobytes())
    os.rename(path + ".part", path)
    return path


class ChromiumPeer:
    """chromium_peer.py in a host namespace, driven by JSON lines."""

    def __init__(self, host):
        import subprocess
        here = __file__.rsplit("/", 1)[0]
        self.proc = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, f"{here}/chromium_peer.py", "10.200.0.1:3478", pattern_y4m()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if not json.loads(self.proc.stdout.readline() or "{}").get("ready"):
            raise RuntimeError("Chromium peer did not start")

    def do(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline() or '{"error": "no answer"}')
        if isinstance(out, dict) and ("error" in out or isinstance(out.get("sdp"), dict)):
            raise RuntimeError(f"Chromium peer: {cmd['op']}: {out}")
        return out

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


def anchor_run(bed, relay, p1, p2, settings, cap, outage):
    """One window of the same scenario between two Chromiums: p1 (site 1) sends through
    the cap to p2 (site 2). Figures from Chromium's own stats."""
    wait(lambda: (p1.do(op="stats")["outbound"].get("targetBitrate") or 0) >= 1_500_000, 40)
    time.sleep(2)
    before = p2.do(op="stats")["inbound"]
    t0 = time.monotonic()
    if settings and not settings.startswith("path:"):
        relay.set(settings)
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "add", "dev", "w2", "root", "tbf", "rate", f"{cap}kbit", "burst", "16kb", "latency", "100ms")
    if outage:
        relay.set(f"outage={outage}")
    adapt, last = None, (t0, p1.do(op="stats")["outbound"].get("bytesSent", 0))
    while time.monotonic() - t0 < WINDOW:
        time.sleep(0.25)
        now, sent = time.monotonic(), p1.do(op="stats")["outbound"].get("bytesSent", 0)
        if cap and adapt is None and (sent - last[1]) * 8 / (now - last[0]) <= cap * 1000:
            adapt = now - t0
        last = (now, sent)
    after = p2.do(op="stats")["inbound"]
    elapsed = time.monotonic() - t0
    if settings and not settings.startswith("path:"):
        relay.clear()
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "del", "dev", "w2", "root")
    t1 = time.monotonic()
    recover = None
    if wait(lambda: (p1.do(op="stats")["outbound"].get("targetBitrate") or 0) >= 1_500_000, 30):
        recover = time.monotonic() - t1
    d = lambda k: (after.get(k) or 0) - (before.get(k) or 0)  # noqa: E731
    return {
        "longest": None,   # Chromium counts freezes, it does not keep the longest
        "total": d("totalFreezesDuration"),
        "fps": d("framesDecoded") / elapsed,
        "share": d("bytesReceived") * 8 / elapsed / (cap * 1000) if cap else None,
        "kbps": d("bytesReceived") * 8 / elapsed / 1000,
        "adapt": adapt,
        "recover": recover,
        # Chromium has no capture-to-frame delay in its stats: half the round trip plus
        # the mean jitter buffer and decode delay over the window (a mean, not p50).
        "delay50": 1000 * ((p2.do(op="stats")["pair"].get("currentRoundTripTime") or 0) / 2
                           + d("jitterBufferDelay") / max(d("jitterBufferEmittedCount"), 1)
                           + d("totalDecodeTime") / max(d("framesDecoded"), 1)),
        "delay95": None,
    }


def anchor(name, settings, cap, outage, runs):
    bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-impair-")
    results = []
    turn = start_coturn(bed, work)
    try:
        host1, _, _ = bed.site(1, "eim", "eif")
        host2, _, _ = bed.site(2, "eim", "eif")
        relay = bed.impair(seed=7)
        if settings and settings.startswith("path:"):
            relay.set(settings[5:])
        for _ in range(runs):
            p1, p2 = ChromiumPeer(host1), ChromiumPeer(host2)
            try:
                offer = p1.do(op="offer")["sdp"]
                p1.do(op="accept", sdp=p2.do(op="answer", sdp=offer)["sdp"])
                if not wait(lambda: (p2.do(op="stats")["inbound"].get("framesDecoded") or 0) > 30, 20):
                    raise RuntimeError("no video between the two Chromiums")
                results.append(anchor_run(bed, relay, p1, p2, settings, cap, outage))
            finally:
                p1.close()
                p2.close()
        relay.close()
    finally:
        turn.kill()
        bed.close()
    report(f"{name} (Chromium ↔ Chromium)", results, cap)


class DeviceEnd:
    """The device's side of a mixed call, with the same figures as a Chromium's."""

    def __init__(self, device):
        self.d = device

    def inbound(self):
        i = inbound(self.d)
        return {"framesDecoded": i.get("framesReceived"), "bytesReceived": i.get("bytesReceived"),
                "totalFreezesDuration": i.get("totalFreezesDuration"), "delay": i.get("endToEndDelayP50Ms")}

    def sent(self):
        return self.d.stat("outbound-rtp", "video", "bytesSent") or 0

    def target(self):
        return self.d.stat("outbound-rtp", "video", "targetBitrate") or 0


class ChromiumEnd:
    def __init__(self, peer):
        self.p = peer

    def inbound(self):
        return self.p.do(op="stats")["inbound"]

    def sent(self):
        return self.p.do(op="stats")["outbound"].get("bytesSent", 0)

    def target(self):
        return self.p.do(op="stats")["outbound"].get("targetBitrate") or 0


def mixed_run(bed, relay, sender, receiver, link, settings, cap, outage):
    """One window of a device ↔ Chromium call; `sender` sends through the cap on `link`
    (w2 towards the device's site, w1 towards Chromium's), `receiver` is measured."""
    wait(lambda: sender.target() >= 1_500_000, 40)
    time.sleep(2)
    before = receiver.inbound()
    t0 = time.monotonic()
    if settings and not settings.startswith("path:"):
        relay.set(settings)
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "add", "dev", link, "root", "tbf", "rate", f"{cap}kbit", "burst", "16kb", "latency", "100ms")
    if outage:
        relay.set(f"outage={outage}")
    adapt, last = None, (t0, sender.sent())
    while time.monotonic() - t0 < WINDOW:
        time.sleep(0.25)
        now, sent = time.monotonic(), sender.sent()
        if cap and adapt is None and (sent - last[1]) * 8 / (now - last[0]) <= cap * 1000:
            adapt = now - t0
        last = (now, sent)
    after = receiver.inbound()
    elapsed = time.monotonic() - t0
    if settings and not settings.startswith("path:"):
        relay.clear()
    if cap:
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "del", "dev", link, "root")
    t1 = time.monotonic()
    recover = time.monotonic() - t1 if wait(lambda: sender.target() >= 1_500_000, 30) else None
    d = lambda k: (after.get(k) or 0) - (before.get(k) or 0)  # noqa: E731
    return {"longest": None, "total": d("totalFreezesDuration"), "fps": d("framesDecoded") / elapsed,
            "share": d("bytesReceived") * 8 / elapsed / (cap * 1000) if cap else None,
            "kbps": d("bytesReceived") * 8 / elapsed / 1000, "adapt": adapt, "recover": recover,
            "delay50": after.get("delay"), "delay95": None}


def mixed(name, settings, cap, outage, runs):
    """Device (site 2, the callee) ↔ Chromium (site 1, calling it WHIP-style), both
    directions: Chromium → device through the impairment (and a cap towards site 2), then
    device → Chromium (a cap towards site 1)."""
    from vptest import NSDevice
    for direction in ("Chromium → device", "device → Chromium"):
        bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-impair-")
        results = []
        turn = start_coturn(bed, work)
        try:
            host1, _, _ = bed.site(1, "eim", "eif")
            host2, ip2, public2 = bed.site(2, "eim", "eif", forwarded_tcp=(8080,))
            device = NSDevice(work, host2, "b", ip2, extra=VIDEO)
            relay = bed.impair(seed=7)
            if settings and settings.startswith("path:"):
                relay.set(settings[5:])
            try:
                for _ in range(runs):
                    peer = ChromiumPeer(host1)
                    try:
                        peer.do(op="whip", url=f"http://{public2}:8080", token=device.token)
                        if not wait(lambda: (device.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 20):
                            print(f"  (no video from Chromium at the device; run skipped)\n{device.log()[-600:]}", flush=True)
                            continue
                        dev, chrome = DeviceEnd(device), ChromiumEnd(peer)
                        if direction == "Chromium → device":
                            r = mixed_run(bed, relay, chrome, dev, "w2", settings, cap, outage)
                        else:
                            r = mixed_run(bed, relay, dev, chrome, "w1", settings, cap, outage)
                        # A call that ended inside the window has no figures (its counters
                        # started over): say so, with why, instead of averaging them.
                        if device.status().get("state") != "in-call":
                            print(f"  (the call ended during the window; run not counted)\n{device.log()[-1500:]}", flush=True)
                            continue
                        results.append(r)
                        peer.do(op="hangup")
                        wait(lambda: device.status().get("state") == "idle", 10)
                    finally:
                        peer.close()
            finally:
                relay.close()
                device.stop()
        finally:
            turn.kill()
            bed.close()
        report(f"{name} ({direction})", results, cap)


def lip_sync(seconds=60):
    """Issue #13's lip-sync target on the bed: a 60 s call with 20 ms ± 30 ms one-way
    delay (packets kept in order, as a queue does) both ways; the callee shows the far end
    on its simulated screen and reports how far each picture's flip was from when its
    sound was heard (`media.lipSync*`)."""
    bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-impair-")
    turn = start_coturn(bed, work)
    try:
        a, b, _ = caller_and_callee(bed, work, VIDEO, VIDEO + '\n[display]\noutput = "simulated"')
        relay = bed.impair(seed=11)
        relay.set("delay=20 jitter=30 reorder=0")
        try:
            a.ctl("call", "b")
            wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 15)
            time.sleep(seconds)
            m = b.status().get("call", {}).get("media", {})
        finally:
            relay.close()
            a.stop()
            b.stop()
    finally:
        turn.kill()
        bed.close()
    share = m.get("lipSyncInWindow")
    print(f"{'lip sync, 20 ± 30 ms delay, 60 s':32s} offset (audio ahead +) p5 {m.get('lipSyncOffsetP5Ms')} p50 {m.get('lipSyncOffsetP50Ms')} "
          f"p95 {m.get('lipSyncOffsetP95Ms')} ms; within −125/+45 ms: {share * 100 if share is not None else float('nan'):.1f} % "
          f"of {m.get('videoFramesLipSynced')} frames (late {m.get('videoFramesLate')}, jitter buffer {m.get('videoJitterBufferMs')} ms)", flush=True)


if __name__ == "__main__":
    print(f"\n## Impairment bed: device ↔ device, 720p 2 Mbit/s, {WINDOW:.0f} s per run, {RUNS} runs each (median, p25–p75)")
    if not ONLY or ONLY == "lip":
        lip_sync()
    for name, (settings, cap, outage) in SCENARIOS.items():
        if ONLY and ONLY not in name:
            continue
        scenario(name, settings, cap, outage, RUNS)
        if ANCHOR:
            anchor(name, settings, cap, outage, RUNS)
            mixed(name, settings, cap, outage, RUNS)
