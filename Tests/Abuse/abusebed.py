"""The abuse test bed: real videophoned processes in a network namespace of their own,
and the abuser (this Python process) in another, joined by one veth:

    client namespace (this process)            device namespace (videophoned a, b)
    vpa-TAG 10.99.N.2 (.4 .6 .8: more sources) ── eth0 10.99.N.1 (a), 10.99.N.3 (b)

Both ends route 224.0.0.0/4 into the veth, so mDNS multicast crosses it and goes nowhere
else. This process moves itself into its own client namespace first (`enter_client_namespace`),
so no packet it sends can leave the namespaces made here.

Shared by test_abuse.py (make test) and bench_abuse.py (make bench)."""
import itertools
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "Interop"))
from vptest import BIN, Namespaces, NSDevice, enter_netns, footprint, sh, wait  # noqa: E402,F401

# Small pictures: the point is the daemon under abuse, not the encoder, on two cores.
VIDEO = "[video]\nwidth = 320\nheight = 180\nfps = 15\nbitrate_kbps = 300\n"
FPS = 15
_subnets = itertools.count(1 + os.getpid() % 50)
_client = {}


def enter_client_namespace():
    """Moves this process's main thread (and so every thread and process it starts later)
    into a fresh namespace with only loopback. Call before starting any thread."""
    if "ns" in _client:
        return _client["ns"]
    name = f"vpabuse-client-{os.getpid()}"
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    # Many short connections from a few addresses: a wide port range, TIME_WAIT reuse.
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000")
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    _client["old"] = enter_netns(name)
    _client["ns"] = name
    return name


def leave_client_namespace():
    if "ns" in _client:
        sh("ip", "netns", "del", _client.pop("ns"), check=False)


class AbuseBed(Namespaces):
    """One device namespace joined to the client namespace; devices a (10.99.N.1) and b
    (10.99.N.3) are made with `device`."""

    def __init__(self, workdir):
        super().__init__()
        enter_client_namespace()
        self.workdir = workdir
        n = next(_subnets) % 250 + 1
        net = f"10.99.{n}"
        self.dev = self.ns("abuse")
        self.link = f"vpa-{self.tag}"
        self.a_ip, self.b_ip = f"{net}.1", f"{net}.3"
        self.client_ip = f"{net}.2"
        self.sources = [f"{net}.{i}" for i in (2, 4, 6, 8)]
        sh("ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0", "netns", self.dev)
        for ip in self.sources:
            sh("ip", "addr", "add", f"{ip}/24", "dev", self.link)
        sh("ip", "link", "set", self.link, "up")
        sh("ip", "route", "replace", "224.0.0.0/4", "dev", self.link)
        sh("ip", "-n", self.dev, "link", "set", "lo", "up")
        for ip in (self.a_ip, self.b_ip):
            sh("ip", "-n", self.dev, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", self.dev, "link", "set", "eth0", "up")
        sh("ip", "-n", self.dev, "route", "add", "224.0.0.0/4", "dev", "eth0")
        self.devices = []
        # Addresses settle (no DAD for IPv4, but the link needs to be up on both ends).
        wait(lambda: "state UP" in sh("ip", "link", "show", self.link) or "LOWER_UP" in sh("ip", "link", "show", self.link), 3)

    def device(self, name, extra="", peers=(), network=""):
        ip = self.a_ip if name == "a" else self.b_ip
        d = NSDevice(self.workdir, self.dev, name, ip, extra=network + "\n" + VIDEO + extra, peers=peers)
        self.devices.append(d)
        if not wait(lambda: d.alive() and d.status().get("state") == "idle", 10):
            raise RuntimeError(f"{name} did not start:\n{d.log()}")
        return d

    def pair(self, extra="", network=""):
        """a (caller, with b as its peer) and b (callee)."""
        b = self.device("b", extra, network=network)
        a = self.device("a", extra, peers=[("b", f"http://{self.b_ip}:8080", "b-token")], network=network)
        return a, b

    def close(self):
        for d in self.devices:
            d.stop()
        super().close()


# ---------------------------------------------------------------- HTTP, raw


def raw_http(ip, port, data, timeout=10, source=None, half_close=False):
    """Sends `data` as it is, 16 kB at a time, stopping when the server answers early (a 413
    before the whole body); returns (status or None, body bytes, error or None)."""
    import select
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((ip, port))
        for i in range(0, len(data), 16384):
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(data[i:i + 16384])
            except (BrokenPipeError, ConnectionResetError):
                break  # it stopped reading: its answer, if any, is waiting
        else:
            if half_close:
                s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
        resp = b"".join(chunks)
    except OSError as e:
        return None, b"", f"{type(e).__name__}: {e}"
    finally:
        s.close()
    head, _, body = resp.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, resp, "no status line"
    return status, body, None


def request(ip, port, method, path, body=b"", headers=(), timeout=10, source=None):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {ip}:{port}"] + [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return raw_http(ip, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body, timeout, source)


def http_load(ip, port, total, sources, paths=("/status", "/metrics", "/", "/nothing-here"), timeout=10):
    """`total` GETs from len(sources) client processes at once (Tests/Abuse/httpload.py),
    each on its own source address; returns the merged counts and latencies."""
    import json
    per = total // len(sources)
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "httpload.py"), ip, str(port), str(per), src, str(timeout), *paths],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for src in sources]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"httpload failed: {err}")
        results.append(json.loads(out))
    merged = {"sent": sum(r["sent"] for r in results), "statuses": {}, "errors": {}, "seconds": max(r["seconds"] for r in results),
              "latencies_ms": sorted(itertools.chain.from_iterable(r["latencies_ms"] for r in results))}
    for r in results:
        for k, v in r["statuses"].items():
            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
        for k, v in r["errors"].items():
            merged["errors"][k] = merged["errors"].get(k, 0) + v
    return merged


# ---------------------------------------------------------------- slow headers


class SlowHeaders:
    """`count` connections that send their headers one byte at a time, `interval` apart:
    half a real request that would end some day, half a header line that never ends;
    spread over `sources` (round robin). A connection the server closes is opened again
    (after `reopen` s), as an attacker would."""

    def __init__(self, ip, port, count, interval=0.5, reopen=0.2, sources=()):
        self.ip, self.port, self.count, self.interval, self.reopen, self.sources = ip, port, count, interval, reopen, list(sources)
        self.stopping = threading.Event()
        self.opened = self.closed_by_server = self.refused = self.bytes_sent = 0
        self.open_now = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def script(self, i):
        if i % 2 == 0:
            return b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (k, b"y" * 20) for k in range(40)) + b"\r\n"
        return b"POST /call HTTP/1.1\r\nHost: x\r\nX-Never-Ends: " + b"z" * 100000

    def start(self):
        self.thread.start()
        return self

    def run(self):
        conns = {}  # i -> [socket, script, offset, next time]
        now = time.monotonic()
        for i in range(self.count):
            conns[i] = [None, self.script(i), 0, now + i * self.interval / self.count]
        while not self.stopping.is_set():
            now = time.monotonic()
            for i, c in conns.items():
                if now < c[3]:
                    continue
                if c[0] is None:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    if self.sources:
                        s.bind((self.sources[i % len(self.sources)], 0))
                    try:
                        s.connect((self.ip, self.port))
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        self.refused += 1
                        c[3] = now + self.reopen
                        continue
                    c[0], c[2] = s, 0
                    self.opened += 1
                    c[3] = now + self.interval
                    continue
                s = c[0]
                try:
                    # Anything the server said (a 408, a 503) or its close ends this one.
                    try:
                        s.recv(4096)
                        raise ConnectionError("server answered or closed")
                    except BlockingIOError:
                        pass
                    if c[2] < len(c[1]):
                        s.send(c[1][c[2]:c[2] + 1])
                        c[2] += 1
                        self.bytes_sent += 1
                    c[3] = now + self.interval
                except OSError:
                    s.close()
                    c[0] = None
                    self.closed_by_server += 1
                    c[3] = now + self.reopen
            self.open_now = sum(1 for c in conns.values() if c[0] is not None)
            self.stopping.wait(0.01)
        for c in conns.values():
            if c[0] is not None:
                c[0].close()

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


# ---------------------------------------------------------------- calls


def video_frames(dev, status=None):
    return dev.stat("inbound-rtp", "video", "framesReceived", status) or 0


def call_once(a, b, frames=1, timeout=10):
    """a calls b; returns seconds from the command until both decoded `frames` video frames
    (None: it did not happen in `timeout`); leaves the call up."""
    t0 = time.monotonic()
    r = a.ctl("call", "b", timeout=timeout)
    if r.returncode != 0:
        return None, f"call refused: {r.stdout.strip()} {r.stderr.strip()}"
    ok = wait(lambda: video_frames(a) >= frames and video_frames(b) >= frames, timeout - (time.monotonic() - t0), interval=0.01)
    if not ok:
        return None, f"no video both ways within {timeout} s (a: {a.state()}, b: {b.state()})"
    return time.monotonic() - t0, None


def hang_up(a, b, timeout=5):
    a.ctl("hangup", timeout=timeout)
    return wait(lambda: a.state() == "idle" and b.state() == "idle", timeout, interval=0.02)


def settled_footprint(dev, pause=3.0, samples=3, limit=8.0):
    """The footprint once the daemon has settled: after `pause` (a call's media threads
    are torn down after its state reads idle, and the daemon gives the call's pages back
    up to 2 s after it ended), samples 0.2 s apart until `samples` in a row agree on
    anonymous memory within 64 kB, at most `limit` seconds; the median of the last
    `samples`."""
    time.sleep(pause)
    fs = []
    deadline = time.time() + limit
    while True:
        fs.append(dev.footprint())
        last = fs[-samples:]
        if len(last) == samples and max(f["anon_kb"] for f in last) - min(f["anon_kb"] for f in last) <= 64:
            break
        if time.time() > deadline:
            break
        time.sleep(0.2)
    return {k: int(statistics.median(f[k] for f in fs[-samples:])) for k in fs[0]}


def describe(fp):
    return f"threads {fp['threads']}, maps {fp['maps']}, VmRSS {fp['rss_kb']} kB (anonymous {fp['anon_kb']} kB)"


# ---------------------------------------------------------------- mDNS


def dns_name(name):
    return b"".join(bytes([len(label)]) + label for label in name.encode().split(b".")) + b"\0"


def mdns_answer(names, ip=b"\x0a\x63\x00\x63"):
    body = b"".join(dns_name(n) + struct.pack("!HHIH", 1, 0x8001, 120, 4) + ip for n in names)
    return struct.pack("!6H", 0, 0x8400, 0, len(names), 0, 0) + body


def mdns_query(name, qu=False):
    return struct.pack("!6H", 0, 0, 1, 0, 0, 0) + dns_name(name) + struct.pack("!HH", 1, 0x8001 if qu else 1)


def mdns_garbage(rng):
    """One malformed or hostile mDNS datagram."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 600))
    if kind == 1:  # counts far beyond the datagram
        return struct.pack("!6H", 0, 0x8400, 65535, 65535, 65535, 65535)
    if kind == 2:  # a compression pointer to itself
        return struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 120, 4) + b"\1\2\3\4"
    if kind == 3:  # a pointer past the end
        return struct.pack("!6H", 0, 0, 1, 0, 0, 0) + b"\xc3\xff" + struct.pack("!HH", 1, 1)
    if kind == 4:  # a name of 20 labels of 63 bytes (> 255)
        return struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + (b"\x3f" + b"a" * 63) * 20 + b"\0" + struct.pack("!HHIH", 1, 1, 120, 4) + b"\1\2\3\4"
    if kind == 5:  # rdlength beyond the datagram
        return struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + dns_name("x.local") + struct.pack("!HHIH", 1, 1, 120, 65535) + b"\1\2"
    if kind == 6:  # an A record of 16 bytes, an AAAA of 4
        return (struct.pack("!6H", 0, 0x8400, 0, 2, 0, 0) + dns_name(f"{rng.getrandbits(64):x}.local") + struct.pack("!HHIH", 1, 1, 120, 16) + b"\7" * 16
                + dns_name(f"{rng.getrandbits(64):x}.local") + struct.pack("!HHIH", 28, 1, 120, 4) + b"\7" * 4)
    if kind == 7:  # a truncated header
        return b"\0\0\x84"
    if kind == 8:  # a query whose name is a chain of pointers back and forth
        return struct.pack("!6H", 0, 0, 2, 0, 0, 0) + b"\xc0\x12" + struct.pack("!HH", 1, 1) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    # labels with dots, NULs and non-UTF-8 inside
    return struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x05a.b\0\xff\x05local\0" + struct.pack("!HHIH", 1, 1, 120, 4) + b"\1\2\3\4"


class MDNSFlood:
    """Sends `total` datagrams: answers for names never asked (each name new), queries for
    names nobody has, and malformed datagrams; to 224.0.0.251:5353 from port 5353 and as
    unicast to each target's port 5353. Paced at `rate` datagrams/s."""

    def __init__(self, source, targets, total, rate=8000, names_per_answer=4, seed=1):
        self.source, self.targets, self.total, self.rate, self.names_per_answer = source, targets, total, rate, names_per_answer
        self.rng = random.Random(seed)
        self.sent = self.names = self.errors = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        mc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        mc.bind((self.source, 5353))
        mc.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.source))
        mc.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        mc.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        uc.bind((self.source, 0))
        t0 = time.monotonic()
        serial = 0
        while self.sent < self.total and not self.stopping.is_set():
            kind = self.sent % 8
            if kind < 4:
                names = []
                for _ in range(self.names_per_answer):
                    serial += 1
                    names.append(f"{serial:08x}-{self.rng.getrandbits(64):016x}.local")
                data = mdns_answer(names)
                self.names += len(names)
            elif kind == 4:
                data = mdns_query(f"{self.rng.getrandbits(64):016x}.local", qu=self.sent % 16 == 4)
            else:
                data = mdns_garbage(self.rng)
            try:
                if self.sent % 3 == 2:
                    (mc if kind < 4 else uc).sendto(data, (self.targets[self.sent % len(self.targets)], 5353))
                else:
                    mc.sendto(data, ("224.0.0.251", 5353))
            except OSError:
                self.errors += 1
            self.sent += 1
            if self.sent % 200 == 0:
                ahead = self.sent / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        mc.close()
        uc.close()

    def join(self, timeout=None):
        self.thread.join(timeout)

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


# ---------------------------------------------------------------- SRTP garbage


def rtp_header_length(p):
    n = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10 and len(p) >= n + 4:
        n += 4 + 4 * struct.unpack("!H", p[n + 2:n + 4])[0]
    return n


def h264_garbage(rng, size):
    """A payload that an H.264 depacketizer (RFC 6184) must survive."""
    noise = rng.randbytes(size)
    kind = rng.randrange(12)
    if kind == 0:
        return noise
    if kind == 1:
        return b""
    if kind == 2:  # FU-A with any start/end bits and any inner type
        return bytes([0x7C, rng.getrandbits(8)]) + noise
    if kind == 3:  # STAP-A whose first NAL claims 65535 bytes
        return b"\x78\xff\xff" + noise[:20]
    if kind == 4:  # STAP-A of empty NALs
        return b"\x78" + b"\x00\x00" * 20
    if kind == 5:  # types the packetizer never sends: STAP-B, MTAP16/24, FU-B, reserved
        return bytes([rng.choice((0, 25, 26, 27, 29, 30, 31))]) + noise
    if kind == 6:  # an SPS and a PPS of noise
        return b"\x67" + noise[:30]
    if kind == 7:
        return b"\x68" + noise[:8]
    if kind == 8:  # a lone FU-A end without a start, one byte long
        return b"\x7c\x45"
    if kind == 9:  # STAP-A holding an FU-A
        return b"\x78\x00\x05\x7c\x85" + noise[:3]
    if kind == 10:  # IDR slice of noise
        return b"\x65" + noise
    return noise[:1]


def opus_garbage(rng, size):
    noise = rng.randbytes(size)
    return rng.choice([noise, b"", noise[:1], b"\xff\xff" + noise[:10], bytes([0xFB, 0xBF]) + b"\xff" * 60, b"\x03" + noise[:3]])


def rtp_garbage(rng, ssrcs, pts, video_pts, seqs=None):
    """A whole RTP packet on one of `ssrcs`, any of the offered payload types and some
    that were not, CSRCs, header extensions with nonsense elements, padding. `seqs` keeps
    each SSRC's sequence numbers rising (libsrtp refuses to protect an index it has passed)."""
    cc = rng.choice((0, 0, 0, 3, 15))
    pt = rng.choice(pts + [0, 13, 127])
    x = rng.random() < 0.3
    padding = rng.random() < 0.1
    body = (h264_garbage if pt in video_pts else opus_garbage)(rng, rng.randrange(0, 1100))
    ssrc = rng.choice(ssrcs)
    if seqs is None:
        seq = rng.getrandbits(16)
    else:
        seq = seqs[ssrc] = (seqs.get(ssrc, rng.getrandbits(15)) + rng.choice((1, 1, 1, 2, 50))) & 0xFFFF
    head = struct.pack("!BBHII", 0x80 | (0x20 if padding else 0) | (0x10 if x else 0) | cc, (rng.getrandbits(1) << 7) | pt,
                       seq, rng.getrandbits(32), ssrc)
    head += b"".join(struct.pack("!I", rng.getrandbits(32)) for _ in range(cc))
    if x:
        words = rng.randrange(0, 6)
        head += struct.pack("!HH", rng.choice((0xBEDE, 0x1000, 0x1234)), words) + rng.randbytes(4 * words)
    if padding:  # a padding count larger than the payload
        body = body + bytes([255])
    return head + body


def rtcp_garbage(rng, sender_ssrc, media_ssrcs):
    """A protected-able RTCP packet (PT 192–208, never BYE) whose contents are wrong: report
    counts past the end, lengths past the datagram or zero, feedback of every kind."""
    media = rng.choice(media_ssrcs + [rng.getrandbits(32)])
    kind = rng.randrange(10)
    if kind == 0:  # SR claiming 31 report blocks, carrying none
        return struct.pack("!BBHI", 0x9F, 200, 6, sender_ssrc) + bytes(20)
    if kind == 1:  # RR whose length runs past the datagram
        return struct.pack("!BBHI", 0x81, 201, 0xFFFF, sender_ssrc) + bytes(8)
    if kind == 2:  # a length of zero, then more packets
        return struct.pack("!BBHI", 0x80, 201, 0, sender_ssrc) + struct.pack("!BBHI", 0x80, 202, 0, sender_ssrc) * 3
    if kind == 3:  # SDES items that never end
        return struct.pack("!BBHI", 0x81, 202, 8, sender_ssrc) + b"\x01\xff" + rng.randbytes(28)
    if kind == 4:  # generic NACK for many packets
        fci = b"".join(struct.pack("!HH", rng.getrandbits(16), rng.getrandbits(16)) for _ in range(40))
        return struct.pack("!BBHII", 0x81, 205, 2 + 40, sender_ssrc, media) + fci
    if kind == 5:  # transport feedback of unknown format, any length
        n = rng.randrange(0, 20)
        return struct.pack("!BBHII", 0x80 | rng.randrange(2, 32), 205, 2 + n, sender_ssrc, media) + rng.randbytes(4 * n)
    if kind == 6:  # REMB claiming 255 SSRCs, carrying none
        return struct.pack("!BBHII", 0x8F, 206, 4, sender_ssrc, 0) + b"REMB" + bytes([255, 0x3F, 0xFF, 0xFF])
    if kind == 7:  # FIR / PLI with an FCI of noise
        return struct.pack("!BBHII", 0x80 | rng.choice((1, 4, 5, 15)), 206, 2 + 2, sender_ssrc, media) + rng.randbytes(8)
    if kind == 8:  # APP, XR, and the unassigned types
        pt = rng.choice((192, 193, 195, 204, 207, 208))
        n = rng.randrange(1, 30)
        return struct.pack("!BBHI", 0x80 | rng.randrange(32), pt, n, sender_ssrc) + rng.randbytes(4 * n)
    # a compound: a valid RR, then noise
    return struct.pack("!BBHI", 0x80, 201, 1, sender_ssrc) + bytes([0x80 | rng.randrange(32), rng.choice((200, 201, 202, 205, 206))]) + rng.randbytes(rng.randrange(2, 200))


class SRTPGarbage:
    """Garbage that only a peer holding the keys can send: through an aiortc peer's own
    SRTP session (its RTCDtlsTransport protects what `_send_rtp` is given). While `active`,
    every `mangle_every`-th real RTP packet leaves with its payload (or header extension)
    replaced, keeping its sequence number (the peer's own SSRCs get garbage only this way:
    a packet of our own numbering would make libsrtp refuse the real ones after it);
    `inject` adds whole garbage RTP packets on foreign SSRCs and RTCP packets from the
    peer's SSRCs and foreign ones."""

    def __init__(self, pc, answer_sdp, mangle_every=20, seed=7):
        import re
        self.rng = random.Random(seed)
        senders = pc.getSenders()
        self.dtls = senders[0].transport
        self.send_protected = self.dtls._send_rtp
        self.our_ssrcs = [s._ssrc for s in senders]
        self.video_ssrcs = {s._ssrc for s in senders if s.track is not None and s.track.kind == "video"}
        self.device_ssrcs = sorted({int(x) for x in re.findall(r"a=ssrc:(\d+)", answer_sdp)})
        sdp = pc.localDescription.sdp
        video = sdp[sdp.index("m=video"):] if "m=video" in sdp else ""
        video = video[:video.find("\nm=", 1)] if "\nm=" in video[1:] else video
        self.video_pts = [int(p) for p in re.findall(r"a=rtpmap:(\d+) ", video)]
        self.pts = sorted({int(p) for p in re.findall(r"a=rtpmap:(\d+) ", sdp)})
        self.foreign = [self.rng.getrandbits(32) for _ in range(16)]
        self.seqs = {}
        self.active = False
        self.mangle_every = mangle_every
        self.real = self.mangled = self.injected_rtp = self.injected_rtcp = self.refused_by_libsrtp = 0
        self.dtls._send_rtp = self._send

    async def _send(self, data):
        from aiortc.rtp import is_rtcp
        if self.active and not is_rtcp(data):
            self.real += 1
            if self.real % self.mangle_every == 0:
                try:
                    await self.send_protected(self.mangle(data))
                    self.mangled += 1
                    return
                except Exception:
                    self.refused_by_libsrtp += 1
        await self.send_protected(data)

    def mangle(self, p):
        p = bytearray(p)
        n = rtp_header_length(p)
        ssrc = struct.unpack("!I", p[8:12])[0]
        if p[0] & 0x10 and self.rng.random() < 0.3:  # the extension elements, lengths kept
            for i in range(16, n):
                p[i] = self.rng.getrandbits(8)
            return bytes(p)
        garbage = (h264_garbage if ssrc in self.video_ssrcs else opus_garbage)(self.rng, max(1, len(p) - n))
        return bytes(p[:n]) + garbage

    async def inject(self, seconds, per_second=300, rtp_share=0.6):
        import asyncio
        end = time.monotonic() + seconds
        batch = max(1, per_second // 50)
        while time.monotonic() < end:
            for _ in range(batch):
                if self.rng.random() < rtp_share:
                    pkt = rtp_garbage(self.rng, self.foreign, self.pts, self.video_pts, self.seqs)
                    counter = "injected_rtp"
                else:
                    pkt = rtcp_garbage(self.rng, self.rng.choice(self.our_ssrcs + self.foreign), self.device_ssrcs)
                    counter = "injected_rtcp"
                try:
                    await self.send_protected(pkt)
                    setattr(self, counter, getattr(self, counter) + 1)
                except Exception:
                    self.refused_by_libsrtp += 1
            await asyncio.sleep(0.02)
