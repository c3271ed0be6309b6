"""Helpers shared by the Python test beds (Tests/NAT, Tests/Abuse): shell commands,
polling, network namespaces, videophoned in a namespace, and a process's footprint
(threads, mappings, resident memory) read from /proc."""
import ctypes
import json
import os
import subprocess
import time
import uuid

BIN = os.environ.get("VIDEOPHONE_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.build/debug"))
CLONE_NEWNET = 0x40000000


def sh(*cmd, check=True, input=None):
    r = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def wait(pred, timeout, interval=0.02):
    """Polls `pred` until it returns something true (returned) or `timeout` passes (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return None


class Namespaces:
    """Network namespaces made for one test (named vp<NAME>-<tag>); `close` kills what
    runs in them and deletes them."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces = []

    def ns(self, name):
        full = f"vp{name}-{self.tag}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        return full

    def close(self):
        for ns in reversed(self.namespaces):
            pids = sh("ip", "netns", "pids", ns, check=False).split()
            for p in pids:
                try:
                    os.kill(int(p), 9)
                except OSError:
                    pass
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces = []


def enter_netns(name):
    """Moves the calling thread (and the threads and processes it starts from now on) into
    the named network namespace; returns a descriptor of the one it was in, for
    `leave_netns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {name}: {os.strerror(e)}")
    finally:
        os.close(fd)
    return old


def leave_netns(old):
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.setns(old, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns back: {os.strerror(e)}")
    finally:
        os.close(old)


def footprint(pid):
    """{"threads", "maps", "rss_kb", "anon_kb"} of a live process, from /proc. `anon_kb`
    (RssAnon) is what a leak grows; VmRSS also moves with file pages the daemon gives back
    to the page cache (and faults in again) on its own schedule."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/maps") as f:
        maps = sum(1 for _ in f)
    return {"threads": int(fields["Threads"]), "maps": maps, "rss_kb": int(fields["VmRSS"].split()[0]),
            "anon_kb": int(fields["RssAnon"].split()[0])}


class NSDevice:
    """videophoned in a namespace; talks to it through videophonectl (its control socket is
    a file, reachable from any namespace). `port` and `token` default to 8080 and
    NAME-token."""

    def __init__(self, workdir, namespace, name, ip, extra="", peers=(), bind_all=False, port=8080, token=None):
        self.ns, self.name, self.ip, self.port = namespace, name, ip, port
        self.token = token or f"{name}-token"
        self.url = f"http://{ip}:{port}"
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
listen = "{ip}:{port}"
token = "{self.token}"
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
        # `ip netns exec` execs the daemon: the child's pid is videophoned's.
        self.proc = subprocess.Popen(["ip", "netns", "exec", namespace, os.path.join(BIN, "videophoned"), "--config", path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        for _ in range(200):
            if os.path.exists(self.socket):
                break
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def footprint(self):
        return footprint(self.proc.pid)

    def ctl(self, *args, timeout=30):
        return subprocess.run([os.path.join(BIN, "videophonectl"), "--socket", self.socket, *args], capture_output=True, text=True, timeout=timeout)

    def status(self):
        try:
            r = self.ctl("status", "--json", timeout=10)
        except subprocess.TimeoutExpired:
            return {}
        if r.returncode != 0:
            return {}
        text = r.stdout[r.stdout.index("{"):] if "{" in r.stdout else ""
        try:
            return json.loads(text)
        except ValueError:
            return {}

    def state(self):
        return self.status().get("state")

    def stat(self, type_, kind, field, status=None):
        for s in (status or self.status()).get("call", {}).get("stats", []):
            if s.get("type") == type_ and (kind is None or s.get("kind") == kind):
                return s.get(field)
        return None

    def log(self):
        return open(self.logfile).read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
