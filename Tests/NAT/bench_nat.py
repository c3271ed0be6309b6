"""Call set-up per topology on the NAT test bed (make bench). For each: the caller's
stages from its peer connection's birth (answer received, ICE connected, DTLS ready) and
the callee's first complete video frame from the offer's arrival."""
import statistics
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import caller_and_callee, start_coturn, wait  # noqa: E402
from testbed import TestBed  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
STUN = 'stun_servers = ["10.200.0.1:3478"]'
TURN_UDP = STUN + '\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nusername = "vp"\ncredential = "turn-secret"'
TURN_TLS = '[[turn]]\nurl = "turns:10.200.0.1:5349"\nusername = "vp"\ncredential = "turn-secret"'

TOPOLOGIES = [
    ("srflx (both endpoint-independent NATs)", ("eim", "eif"), ("eim", "eif"), STUN, STUN, False),
    ("relay over UDP (both symmetric NATs)", ("apdm", "apdf"), ("apdm", "apdf"), TURN_UDP, TURN_UDP, False),
    ("relay over TLS (caller's UDP blocked)", ("eim", "apdf"), ("eim", "apdf"), TURN_TLS, TURN_UDP, True),
]




def spread(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"{statistics.median(xs):6.1f} ms (p25–p75 {q[0]:.1f}–{q[2]:.1f}, n={len(xs)})"


def measure(name, nat_a, nat_b, cfg_a, cfg_b, block):
    bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-natbench-")
    turn = start_coturn(bed, work)
    try:
        a, b, _ = caller_and_callee(bed, work, f"[ice]\n{cfg_a}", f"[ice]\n{cfg_b}", nat_a, nat_b,
                                    prepare=bed.block_udp if block else None)
        ice, dtls, frame, types = [], [], [], set()
        try:
            for _ in range(RUNS):
                a.ctl("call", "b")
                st = wait(lambda: (lambda s: s if s.get("call", {}).get("setup", {}).get("firstVideoFrameReceived") else None)(b.status()), 15)
                sa = a.status().get("call", {})
                if st:
                    frame.append(st["call"]["setup"]["firstVideoFrameReceived"])
                    ice.append(sa.get("setup", {}).get("ice"))
                    dtls.append(sa.get("setup", {}).get("dtls"))
                    pair = next((x for x in sa.get("stats", []) if x["type"] == "candidate-pair"), {})
                    types.add(f"{pair.get('localCandidateType')}/{pair.get('remoteCandidateType')}")
                a.ctl("hangup")
                wait(lambda: b.status().get("state") == "idle", 3)
                time.sleep(0.2)
        finally:
            a.stop()
            b.stop()
        print(f"{name:42s} callee's first frame {spread(frame)}   caller ICE {spread(ice)}   DTLS {spread(dtls)}   pairs {sorted(types)}")
    finally:
        turn.kill()
        bed.close()


def media_back_after_address_change(runs):
    from testbed import sh
    bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-natbench-")
    turn = start_coturn(bed, work)
    try:
        a, b, host_a = caller_and_callee(bed, work, f"[ice]\n{STUN}", f"[ice]\n{STUN}", bind_all=True,
                                         prepare=lambda h: sh("ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"))
        ip_a = a.ip
        times = []
        try:
            a.ctl("call", "b")
            wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10)
            current = ip_a
            for k in range(runs):
                new = f"192.168.1.{10 + k}"
                sh("ip", "-n", host_a, "addr", "add", f"{new}/24", "dev", "eth0")
                sh("ip", "-n", host_a, "addr", "del", f"{current}/24", "dev", "eth0")
                changed = time.monotonic()
                current = new
                # Media is back when frames arrive at the callee again after the stall.
                last, last_change = b.stat("inbound-rtp", "video", "framesReceived") or 0, time.monotonic()
                stalled = False
                while time.monotonic() - changed < 10:
                    n = b.stat("inbound-rtp", "video", "framesReceived") or 0
                    if n == last and time.monotonic() - last_change > 0.1:
                        stalled = True
                    if n != last:
                        if stalled:
                            times.append((time.monotonic() - changed) * 1000)
                            break
                        last, last_change = n, time.monotonic()
                    time.sleep(0.01)
                time.sleep(1)
        finally:
            a.stop()
            b.stop()
        print(f"{'media back after an address change':42s} {spread(times)}")
    finally:
        turn.kill()
        bed.close()


if __name__ == "__main__":
    print(f"\n## Call set-up per topology on the NAT test bed ({RUNS} calls each; coturn on the WAN)")
    for t in TOPOLOGIES:
        measure(*t)
    media_back_after_address_change(RUNS)
