"""The broker test bed: the NAT namespaces of Tests/NAT (two homes, each behind its own
NAT, and NO port forward), with Mosquitto brokers on the WAN (10.200.0.1, TLS with a CA
made here, passwords and ACLs that let a device read only its own inbox), coturn as the
STUN server, and device identities made up front so each side can pin the other's
fingerprint."""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "NAT"))
sys.path.insert(0, os.path.join(HERE, ".."))
from testbed import TestBed, sh  # noqa: E402
from vptest import NSDevice, wait  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location("nat_conftest", os.path.join(HERE, "..", "NAT", "conftest.py"))
nat_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nat_conftest)
start_coturn = nat_conftest.start_coturn

BROKER_IP = "10.200.0.1"
PREFIX = "videophone"
ADMIN, ADMIN_PASSWORD = "injector", "injector-secret"


def openssl(*args):
    sh("openssl", *args)


class PKI:
    """A CA, a broker certificate for 10.200.0.1, and a P-256 identity per device (the
    daemon's identity.pem: key then self-signed certificate)."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "pki")
        os.makedirs(self.dir, mode=0o755)
        self.ca, self.ca_key = self.path("ca.crt"), self.path("ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/CN=videophone test CA", "-keyout", self.ca_key, "-out", self.ca)
        self.broker_cert, self.broker_key = self.path("broker.crt"), self.path("broker.key")
        csr = self.path("broker.csr")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=broker.videophone.test",
                "-keyout", self.broker_key, "-out", csr)
        ext = self.path("broker.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=IP:{BROKER_IP}\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
                "-extfile", ext, "-out", self.broker_cert)

    def path(self, name):
        return os.path.join(self.dir, name)

    def client(self, cn):
        """A client certificate and key for broker authentication, signed by the CA, with
        the common name the broker takes as the username."""
        key, csr, cert = self.path(f"{cn[:8]}.key"), self.path(f"{cn[:8]}.csr"), self.path(f"{cn[:8]}.crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2", "-out", cert)
        return cert, key

    def identity(self, state_dir):
        """Writes STATE/identity.pem; returns the SHA-256 fingerprint (AB:CD:..., and hex)."""
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        key, cert = os.path.join(state_dir, "k.pem"), os.path.join(state_dir, "c.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/CN=videophone", "-keyout", key, "-out", cert)
        with open(os.path.join(state_dir, "identity.pem"), "w") as f:
            f.write(open(key).read() + open(cert).read())
        os.chmod(os.path.join(state_dir, "identity.pem"), 0o600)
        os.unlink(key)
        os.unlink(cert)
        fp = sh("openssl", "x509", "-in", os.path.join(state_dir, "identity.pem"), "-noout", "-fingerprint", "-sha256").strip().split("=", 1)[1]
        return fp, fp.replace(":", "").lower()


class Broker:
    """One mosquitto on the WAN: TLS on `port`, passwords, per-device ACLs."""

    def __init__(self, bed, workdir, pki, port, users, client_certificates=False, second_port=None):
        self.port, self.bed = port, bed
        d = os.path.join(workdir, f"broker-{port}")
        os.makedirs(d)
        passwd, acl = os.path.join(d, "passwd"), os.path.join(d, "acl")
        open(passwd, "w").close()
        for user, password in list(users.items()) + [(ADMIN, ADMIN_PASSWORD)]:
            sh("mosquitto_passwd", "-b", passwd, user, password)
        with open(acl, "w") as f:
            # A device (username = its fingerprint) reads only its own inbox, writes its
            # own presence, reads everyone's presence and writes to any inbox. The injector
            # stands for a compromised broker: it may read and write anything.
            f.write(f"user {ADMIN}\ntopic readwrite {PREFIX}/#\n\n"
                    f"pattern read {PREFIX}/inbox/%u\npattern readwrite {PREFIX}/presence/%u\n"
                    f"pattern read {PREFIX}/presence/+\npattern write {PREFIX}/inbox/+\n")
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"""user root
per_listener_settings false
allow_anonymous false
password_file {passwd}
acl_file {acl}
persistence false
set_tcp_nodelay true
log_dest file {os.path.join(d, "log")}
log_type error
log_type warning
log_type notice
listener {port} {BROKER_IP}
cafile {pki.ca}
certfile {pki.broker_cert}
keyfile {pki.broker_key}
""")
            if second_port:
                # A second listener of the same broker (a standby link to it shares its state).
                f.write(f"listener {second_port} {BROKER_IP}\ncafile {pki.ca}\ncertfile {pki.broker_cert}\nkeyfile {pki.broker_key}\n")
            if client_certificates:
                # The device's client certificate is its login: its CN is the username.
                f.write("require_certificate true\nuse_identity_as_username true\n")
        for p in (passwd, acl, conf):
            os.chmod(p, 0o644)
        self.conf = conf
        self.log = os.path.join(d, "log")
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.bed.wan, "mosquitto", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = wait(lambda: self.proc.poll() is not None or
                  sh("ip", "netns", "exec", self.bed.wan, "ss", "-Hltn", f"sport = :{self.port}", check=False).strip(), 5)
        assert ok and self.proc.poll() is None, f"mosquitto did not start: {self.proc.stderr.read().decode() if self.proc.poll() is not None else ''}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def url(self):
        return f"mqtts://{BROKER_IP}:{self.port}"


class NATSCluster:
    """Three nats-server nodes, each in its own namespace on the WAN (10.200.10.N), in one
    cluster with JetStream and an MQTT listener with TLS (port 8883) on each; passwords
    for the devices. The MQTT state (sessions, retained presence) lives in JetStream,
    replicated across the nodes."""

    def __init__(self, bed, workdir, pki, users):
        self.bed, self.procs, self.confs, self.nodes = bed, {}, {}, []
        ips = [f"10.200.10.{n}" for n in (1, 2, 3)]
        for n, ip in enumerate(ips, 1):
            ns = bed.ns(f"nats{n}")
            sh("ip", "-n", bed.wan, "link", "add", f"n{n}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", bed.wan, "addr", "add", f"10.200.10.{10 + n}/32", "dev", f"n{n}")
            sh("ip", "-n", bed.wan, "link", "set", f"n{n}", "up")
            sh("ip", "-n", bed.wan, "route", "add", f"{ip}/32", "dev", f"n{n}")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")  # /32: other nodes are reached through the WAN
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", f"10.200.10.{10 + n}", "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"10.200.10.{10 + n}")
            self.nodes.append((ns, ip))
        # A certificate for the three addresses.
        cert, key, csr, ext = pki.path("nats.crt"), pki.path("nats.key"), pki.path("nats.csr"), pki.path("nats.ext")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=nats.videophone.test",
                "-keyout", key, "-out", csr)
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", pki.ca_key, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
        users = dict(users, **{ADMIN: ADMIN_PASSWORD})
        users_conf = ", ".join(f'{{user: "{u}", password: "{p}"}}' for u, p in users.items())
        for n, (ns, ip) in enumerate(self.nodes, 1):
            d = os.path.join(workdir, f"nats{n}")
            os.makedirs(d)
            routes = ", ".join(f"nats-route://{other}:6222" for _, other in self.nodes if other != ip)
            conf = os.path.join(d, "nats.conf")
            with open(conf, "w") as f:
                f.write(f"""server_name: n{n}
listen: {ip}:4222
http: {ip}:8222
jetstream {{ store_dir: "{d}/js" }}
cluster {{ name: vp, listen: {ip}:6222, routes: [{routes}] }}
authorization {{ users: [{users_conf}] }}
mqtt {{ listen: {ip}:8883, stream_replicas: 3, consumer_replicas: 3, tls {{ cert_file: "{cert}", key_file: "{key}" }} }}
""")
            self.confs[n] = (ns, conf, d)
            self.start(n)
        # Ready when each node's MQTT listener takes a QoS 1 publish: JetStream (where NATS
        # keeps MQTT sessions) has elected its leaders across the cluster by then.
        for n, (_, ip) in enumerate(self.nodes, 1):
            ok = wait(lambda: subprocess.run(["ip", "netns", "exec", bed.wan, "mosquitto_pub", "-h", ip, "-p", "8883", "--cafile", pki.ca,
                                              "-u", ADMIN, "-P", ADMIN_PASSWORD, "-q", "1", "-t", "ready", "-m", "1", "-i", f"ready{n}"],
                                             capture_output=True, timeout=10).returncode == 0, 40, interval=0.5)
            assert ok, f"nats node {n} MQTT not ready: " + self.logs()

    def start(self, n):
        ns, conf, d = self.confs[n]
        self.procs[n] = subprocess.Popen(["ip", "netns", "exec", ns, "nats-server", "-c", conf], stdout=subprocess.DEVNULL,
                                         stderr=open(os.path.join(d, "log"), "a"))

    def kill(self, n):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.kill()
            p.wait(5)

    def url(self, n):
        return f"mqtts://{self.nodes[n - 1][1]}:8883"

    def jsz(self, n):
        """Node n's JetStream report (its monitoring port, /jsz with streams)."""
        import json
        ns, ip = self.nodes[n - 1]
        out = sh("ip", "netns", "exec", ns, "curl", "-s", "-m", "2", f"http://{ip}:8222/jsz?accounts=true&streams=true", check=False)
        try:
            return json.loads(out)
        except ValueError:
            return {}

    def elected_after(self, stream, since):
        """Seconds from `since` (time.time()) to the first new leader of `stream` that a
        node's log announces after it."""
        import datetime
        first = None
        for n, (_, _, d) in self.confs.items():
            for line in open(os.path.join(d, "log"), errors="replace"):
                if f"new stream leader for '$G > {stream}'" not in line:
                    continue
                try:
                    stamp = " ".join(line.split()[1:3])
                    t = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
                except ValueError:
                    continue
                if t > since and (first is None or t < first):
                    first = t
        return None if first is None else first - since

    def stream_leader(self, stream):
        """The node number leading `stream`'s raft group, as a live node reports it."""
        for n in self.procs:
            if self.procs[n].poll() is not None:
                continue
            for acc in self.jsz(n).get("account_details", []):
                for st in acc.get("stream_detail", []):
                    leader = (st.get("cluster") or {}).get("leader")
                    if st.get("name") == stream and leader:
                        return int(leader.lstrip("n"))
        return None

    def logs(self):
        return "".join(f"\n--- nats{n}\n" + open(os.path.join(c[2], "log")).read()[-2500:] for n, c in self.confs.items())

    def close(self):
        for n in list(self.procs):
            self.kill(n)


class Home:
    """A device behind its own NAT (no port forward) with a pinned peer through the broker."""

    def __init__(self, bed, workdir, pki, n, name):
        self.bed, self.n, self.name = bed, n, name
        self.ns, self.ip, self.public = bed.site(n, "eim", "eif")
        self.state = os.path.join(workdir, name, "state")
        self.fingerprint, self.hex = pki.identity(self.state)
        self.password = f"{name}-broker-secret"

    def start(self, workdir, pki, urls, peer, extra="", bind_all=False, prepare=None, password=None, peer_toml=None, auth=None):
        if prepare:
            prepare(self.ns)
        peer_toml = peer_toml or f'''[[peer]]
name = "{peer.name}"
via = "broker"
fingerprint = "sha-256 {peer.fingerprint}"
'''
        cfg = f"""stun_servers = ["{BROKER_IP}:3478"]

[broker]
urls = [{", ".join(f'"{u}"' for u in urls)}]
ca = "{pki.ca}"
{auth or f'username = "{self.hex}"{chr(10)}password = "{password or self.password}"'}
topic_prefix = "{PREFIX}"
{extra}

{peer_toml}"""
        # [ice] first: NSDevice puts `extra` after [network].
        self.dev = NSDevice(workdir, self.ns, self.name, self.ip, extra="[ice]\n" + cfg, bind_all=bind_all)
        return self.dev


def nats_node_loss(bed, workdir, standby, frames_wanted=30, log=print):
    """The NATS failover scenario (the test and bench_nats.py): three nodes; a's first
    broker is the node that leads the MQTT session stream (the worst case: a new connect
    anywhere waits for that stream's leader to be re-elected), b on another node, both
    lists ending with the third. That node is killed; returns (seconds until a is on the
    third node, seconds until b's call to a then shows frames at both, whether JetStream
    had re-elected the session stream's leader by the time the call was up)."""
    pki = PKI(workdir)
    ha, hb = Home(bed, workdir, pki, 1, "a"), Home(bed, workdir, pki, 2, "b")
    turn = nat_conftest.start_coturn(bed, workdir)
    cluster = NATSCluster(bed, workdir, pki, {ha.hex: ha.password, hb.hex: hb.password})
    a = b = None
    try:
        lead = wait(lambda: cluster.stream_leader("$MQTT_sess"), 10, interval=0.2) and cluster.stream_leader("$MQTT_sess")
        assert lead, "no leader for $MQTT_sess: " + cluster.logs()
        third, other = [n for n in (1, 2, 3) if n != lead]
        extra = "standby = true" if standby else ""
        b = hb.start(workdir, pki, [cluster.url(other), cluster.url(third)], ha, extra=extra)
        a = ha.start(workdir, pki, [cluster.url(lead), cluster.url(third)], hb, extra=extra)
        want = lambda d, n: broker_status(d).get("url") == cluster.url(n) and (not standby or broker_status(d).get("standby") == cluster.url(third))
        assert wait(lambda: want(a, lead) and want(b, other), 20), a.log() + b.log() + cluster.logs()
        assert wait(lambda: broker_status(a).get("peers", {}).get("b") == "online", 10), (broker_status(a), a.log())
        frames = lambda d: d.stat("inbound-rtp", "video", "framesReceived") or 0
        assert a.ctl("call", "b").returncode == 0, a.log()
        assert wait(lambda: frames(a) > frames_wanted and frames(b) > frames_wanted, 15), a.log() + "\n----\n" + b.log()
        assert a.ctl("hangup").returncode == 0
        assert wait(lambda: b.state() == "idle", 5)
        cluster.kill(lead)
        killed, killed_wall = time.monotonic(), time.time()
        assert wait(lambda: broker_status(a).get("url") == cluster.url(third), 40, interval=0.02), a.log() + cluster.logs()
        took = time.monotonic() - killed
        # b calls a at once (at most when the session leader of NATS is still being elected).
        assert wait(lambda: b.ctl("call", "a").returncode == 0, 15, interval=0.2), b.log() + a.log()
        assert wait(lambda: frames(a) > frames_wanted and frames(b) > frames_wanted, 15), a.log() + "\n----\n" + b.log()
        call = time.monotonic() - killed
        # With a standby each message reaches the device twice; it takes it once (a second
        # copy would be refused as a replay).
        assert broker_status(a).get("refused") == {} and broker_status(b).get("refused") == {}, (broker_status(a), broker_status(b))
        reelected = cluster.stream_leader("$MQTT_sess") not in (None, lead)  # a live node may still name the dead one
        if not reelected:
            wait(lambda: cluster.stream_leader("$MQTT_sess") not in (None, lead), 15, interval=0.2)
        election = cluster.elected_after("$MQTT_sess", killed_wall)
        log(f"nats: $MQTT_sess led by node {lead}, killed; a on node {third} after {took:.2f} s, "
            f"b's call to a up after {call:.2f} s (session leader re-elected by then: {reelected}, "
            f"after {election if election is None else round(election, 2)} s; standby {standby})")
        return took, call, election
    finally:
        for d in (a, b):
            if d:
                d.stop()
        cluster.close()
        turn.kill()


def injector(bed, pki, *args, topic, timeout=10):
    """mosquitto_pub/_sub on the WAN as the broker's own super-user (a compromised broker)."""
    return ["ip", "netns", "exec", bed.wan, *args, "-h", BROKER_IP, "-p", "8883", "--cafile", pki.ca,
            "-u", ADMIN, "-P", ADMIN_PASSWORD, "-t", topic]


def broker_status(dev):
    return dev.status().get("broker", {})


@pytest.fixture
def bed():
    b = TestBed()
    yield b
    b.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="videophone-mqtt-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
