"""Broker signalling figures on the namespace test bed (make bench): call set-up through
Mosquitto next to direct WHIP over HTTP in the same run, the signed-message round trip
through the broker, failover to the next broker, and idle bytes per device.

Set-up is timed from the control command that places the call (what the button does) to
the first complete video frame at the callee, polled every 5 ms through the callee's
control socket; the two paths alternate, so they share the machine's load."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import BROKER_IP, Broker, Home, NSDevice, PKI, TestBed, broker_status, sh, start_coturn, wait  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def spread(xs, unit="ms"):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"median {statistics.median(xs):7.1f} {unit} (p25–p75 {q[0]:.1f}–{q[2]:.1f}, min {xs[0]:.1f}, max {xs[-1]:.1f}, n={len(xs)})"


def first_frame(dev):
    return (dev.stat("inbound-rtp", "video", "framesReceived") or 0) > 0


def setup_times(bed, work):
    pki = PKI(work)
    ha, hb = Home(bed, work, pki, 1, "a"), Home(bed, work, pki, 2, "b")
    broker = Broker(bed, work, pki, 8883, {ha.hex: ha.password, hb.hex: hb.password})
    turn = start_coturn(bed, work)
    # The HTTP path needs b's port forwarded; the broker path does not use it.
    sh("ip", "netns", "exec", f"vpnat2-{bed.tag}", "nft", "add", "rule", "ip", "vpnat", "pre",
       "iifname", "wan0", "tcp", "dport", "8080", "dnat", "to", hb.ip)
    peers = (f'[[peer]]\nname = "b"\nvia = "broker"\nfingerprint = "sha-256 {hb.fingerprint}"\n\n'
             f'[[peer]]\nname = "b-http"\nurl = "http://{hb.public}:8080"\ntoken = "b-token"\n')
    b = hb.start(work, pki, [broker.url()], ha)
    a = ha.start(work, pki, [broker.url()], hb, peer_toml=peers)
    results = {"b": [], "b-http": []}
    offer_answer = {"b": [], "b-http": []}
    try:
        assert wait(lambda: broker_status(a).get("connected") and broker_status(a).get("peers", {}).get("b") == "online", 10), a.log()
        for i in range(RUNS * 2):
            peer = "b" if i % 2 == 0 else "b-http"
            t0 = time.monotonic()
            r = a.ctl("call", peer)
            if r.returncode != 0:
                print(f"  call {peer} failed: {r.stderr.strip()}")
                continue
            if wait(lambda: first_frame(b), 10, interval=0.005):
                results[peer].append((time.monotonic() - t0) * 1000)
                offer_answer[peer].append(a.status().get("call", {}).get("setup", {}).get("signalling"))
            a.ctl("hangup")
            wait(lambda: b.state() == "idle" and a.state() == "idle", 5)
            time.sleep(0.3)
        st = broker_status(a)
        print(f"call set-up, command to the callee's first frame, through the broker: {spread(results['b'])}")
        print(f"call set-up, command to the callee's first frame, direct WHIP/HTTP:   {spread(results['b-http'])}")
        print(f"offer sent to answer received, through the broker:                   {spread(offer_answer['b'])}")
        print(f"offer sent to answer received, direct WHIP/HTTP:                     {spread(offer_answer['b-http'])}")
        print(f"signed request/reply round trip through the broker (caller's view):  median {st.get('roundTripP50Ms')} ms over {st.get('roundTrips')} requests")
        calls = len(results["b"])
        if calls:
            m = sh("ip", "netns", "exec", ha.ns, "curl", "-s", "-m", "2", f"http://{ha.ip}:8080/metrics")
            count = {d: float(next((l.split()[-1] for l in m.splitlines()
                                    if l.startswith(f'videophone_broker_messages_total{{direction="{d}"}}')), "0")) for d in ("sent", "received")}
            print(f"broker signalling per call (caller): {count['sent'] / calls:.1f} messages / {st['bytesSent'] / calls:.0f} B sent, "
                  f"{count['received'] / calls:.1f} messages / {st['bytesReceived'] / calls:.0f} B received (signed payloads)")
    finally:
        a.stop()
        b.stop()
        turn.kill()
        broker.kill()


def failover(bed, work, runs=8):
    pki = PKI(work)
    ha, hb = Home(bed, work, pki, 1, "a"), Home(bed, work, pki, 2, "b")
    users = {ha.hex: ha.password, hb.hex: hb.password}
    brokers = [Broker(bed, work, pki, 8883, users), Broker(bed, work, pki, 8884, users)]
    a = ha.start(work, pki, [br.url() for br in brokers], hb)
    times = []
    try:
        assert wait(lambda: broker_status(a).get("connected"), 10), a.log()
        for _ in range(runs):
            url = broker_status(a)["url"]
            current = next(br for br in brokers if br.url() == url)
            other = next(br for br in brokers if br is not current)
            current.kill()
            t0 = time.monotonic()
            if wait(lambda: broker_status(a).get("url") == other.url(), 15, interval=0.005):
                times.append((time.monotonic() - t0) * 1000)
            current.start()
            time.sleep(0.5)
        print(f"reconnect to the next broker after the broker in use is killed:    {spread(times)}")
    finally:
        a.stop()
        for br in brokers:
            br.kill()


def idle_bytes(bed, work, seconds=60, keepalive=10):
    """TCP payload between the device and the broker while idle (TLS records included),
    from the socket's own counters; scaled to an hour at the default 60 s keepalive."""
    pki = PKI(work)
    ha, hb = Home(bed, work, pki, 1, "a"), Home(bed, work, pki, 2, "b")
    broker = Broker(bed, work, pki, 8883, {ha.hex: ha.password, hb.hex: hb.password})
    a = ha.start(work, pki, [broker.url()], hb, extra=f"keepalive_s = {keepalive}")

    def counters():
        out = sh("ip", "netns", "exec", ha.ns, "ss", "-tinH", "dst", f"{BROKER_IP}:8883")
        sent = recv = 0
        for tok in out.split():
            if tok.startswith("bytes_sent:"):
                sent = int(tok.split(":")[1])
            elif tok.startswith("bytes_received:"):
                recv = int(tok.split(":")[1])
        return sent, recv
    try:
        assert wait(lambda: broker_status(a).get("connected"), 10), a.log()
        time.sleep(2)
        s0, r0 = counters()
        p0 = broker_status(a)
        time.sleep(seconds)
        s1, r1 = counters()
        p1 = broker_status(a)
        pings = seconds / keepalive
        per_ping = ((s1 - s0) + (r1 - r0)) / pings
        payload = (p1["bytesSent"] - p0["bytesSent"]) + (p1["bytesReceived"] - p0["bytesReceived"])
        print(f"idle, {seconds} s at keepalive {keepalive} s: {s1 - s0} B sent, {r1 - r0} B received over TLS "
              f"({per_ping:.0f} B per keepalive exchange); signalling payload {payload} B")
        print(f"idle per device per hour at the default 60 s keepalive: {per_ping * 60:.0f} B of TLS keepalive, "
              f"{payload * 3600 / seconds:.0f} B of signalling; 1 broker connection per device")
    finally:
        a.stop()
        broker.kill()


if __name__ == "__main__":
    for step in (setup_times, failover, idle_bytes):
        bed, work = TestBed(), tempfile.mkdtemp(prefix="videophone-mqttbench-")
        os.chmod(work, 0o755)
        try:
            step(bed, work)
        finally:
            bed.close()
