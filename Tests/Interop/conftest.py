"""Fixtures for the interop tests: real videophoned processes and real peers (Chromium
through Selenium, aiortc), inside the network namespace Tests/Interop/run.sh made."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

DEVICE_IP = "10.77.0.1"
PEER_IP = "10.77.0.2"
TOKEN = "sim-token"
BIN = os.environ.get("VIDEOPHONE_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug"))


def free_port(ip=DEVICE_IP):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=b"", headers=None, timeout=10):
    """Returns (status, headers, body text)."""
    req = urllib.request.Request(url, data=body if method in ("POST", "PATCH") else None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def wait_until(predicate, timeout, interval=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class Device:
    """One videophoned process with a generated config."""

    def __init__(self, workdir, name, extra="", peers=()):
        self.name = name
        self.port = free_port()
        self.url = f"http://{DEVICE_IP}:{self.port}"
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
listen = "{DEVICE_IP}:{self.port}"
token = "{TOKEN}"

[control]
socket = "{self.socket}"

[network]
addresses = ["{DEVICE_IP}"]
{extra}
{peers_toml}
"""
        self.config = os.path.join(self.dir, "videophone.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.logfile = os.path.join(self.dir, "videophoned.log")
        self.proc = subprocess.Popen([os.path.join(BIN, "videophoned"), "--config", self.config],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        if not wait_until(lambda: self._ready(), 10):
            raise RuntimeError(f"{name} did not start:\n{self.log()}")

    def _ready(self):
        try:
            return http("GET", self.url + "/status", timeout=1)[0] == 200
        except OSError:
            return False

    def status(self):
        # With the token: without one the device shows no call details.
        return json.loads(http("GET", self.url + "/status", headers={"Authorization": f"Bearer {TOKEN}"})[2])

    def stat(self, type_, kind, field):
        for s in self.status().get("call", {}).get("stats", []):
            if s.get("type") == type_ and s.get("kind") == kind:
                return s.get(field) or 0
        return 0

    def ctl(self, *command):
        return subprocess.run([os.path.join(BIN, "videophonectl"), "--socket", self.socket, *command],
                              capture_output=True, text=True, timeout=20)

    def log(self):
        with open(self.logfile) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="videophone-interop-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_device(workdir):
    devices = []

    def make(name="device", extra="", peers=()):
        d = Device(workdir, name, extra, peers)
        devices.append(d)
        return d

    yield make
    for d in devices:
        d.stop()


def chrome(extra_args=(), insecure_origins=(), fake_media=True):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    o = Options()
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--autoplay-policy=no-user-gesture-required"]
    if fake_media:
        # Grants camera and microphone: Chromium then shows its real addresses.
        args += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if insecure_origins:
        args.append("--unsafely-treat-insecure-origin-as-secure=" + ",".join(insecure_origins))
    for a in args + list(extra_args):
        o.add_argument(a)
    return webdriver.Chrome(options=o, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))


@pytest.fixture
def browser_factory():
    drivers = []

    def make(extra_args=(), insecure_origins=(), fake_media=True):
        d = chrome(extra_args, insecure_origins, fake_media)
        drivers.append(d)
        return d

    yield make
    for d in drivers:
        try:
            d.quit()
        except Exception:
            pass
