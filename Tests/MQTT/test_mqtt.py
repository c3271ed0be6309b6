"""Calls between two homes with NO port forward: signalling through Mosquitto (TLS,
passwords, per-device ACLs), every message signed with the device identity and checked
against the pinned fingerprint. Media flows peer to peer (STUN through each NAT)."""
import os
import subprocess
import time

from conftest import BROKER_IP, PREFIX, Broker, Home, PKI, broker_status, injector, sh, start_coturn, wait

FRAMES = 30


def frames(dev):
    return dev.stat("inbound-rtp", "video", "framesReceived") or 0


def homes(bed, workdir, brokers=((8883,),)):
    pki = PKI(workdir)
    a = Home(bed, workdir, pki, 1, "a")
    b = Home(bed, workdir, pki, 2, "b")
    users = {a.hex: a.password, b.hex: b.password}
    started = [Broker(bed, workdir, pki, port, users) for (port,) in brokers]
    return pki, a, b, started


def metrics(home):
    return sh("ip", "netns", "exec", home.ns, "curl", "-s", "-m", "2", f"http://{home.ip}:8080/metrics")


def connected(dev):
    return broker_status(dev).get("connected")


def test_call_through_the_broker_with_no_port_forward_and_ice_restart_from_the_callee(bed, workdir):
    turn = start_coturn(bed, workdir)
    pki, ha, hb, (broker,) = homes(bed, workdir)
    try:
        b = hb.start(workdir, pki, [broker.url()], ha, bind_all=True,
                     prepare=lambda ns: sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"))
        a = ha.start(workdir, pki, [broker.url()], hb)
        assert wait(lambda: connected(a) and connected(b), 10), a.log() + b.log()
        assert wait(lambda: broker_status(a).get("peers", {}).get("b") == "online", 5), broker_status(a)
        # No port forward: b's NAT drops TCP to its signalling port (a direct POST fails).
        r = sh("ip", "netns", "exec", ha.ns, "curl", "-s", "-m", "1", "-o", "/dev/null", "-w", "%{http_code}",
               f"http://{hb.public}:8080/status", check=False)
        assert r in ("000", ""), r

        # By name.
        r = a.ctl("call", "b")
        assert r.returncode == 0, r.stdout + r.stderr + a.log()
        assert wait(lambda: frames(a) > FRAMES and frames(b) > FRAMES, 15), a.log() + "\n----\n" + b.log()
        assert a.status()["call"]["direction"] == "outgoing" and b.status()["call"]["direction"] == "incoming"

        # The callee moves to another address: it reconnects to the broker and restarts ICE
        # towards the caller through it (over HTTP only the caller could).
        ip_b = b.ip
        sh("ip", "-n", hb.ns, "addr", "add", "192.168.2.3/24", "dev", "eth0")
        sh("ip", "-n", hb.ns, "addr", "del", f"{ip_b}/24", "dev", "eth0")
        time.sleep(0.3)
        stalled = frames(a)
        assert wait(lambda: frames(a) > stalled + FRAMES, 15), a.log() + "\n----\n" + b.log()
        assert "ICE restart" in b.log() and "ICE restart asked for by the peer" in a.log()
        assert a.state() == "in-call" and b.state() == "in-call"

        # The callee hangs up: the hang-up reaches the caller through the broker.
        assert b.ctl("hangup").returncode == 0
        assert wait(lambda: a.state() == "idle", 5), a.log()
        assert "remote" in (a.status().get("lastCall", {}).get("endReason", "")).lower() or "DELETE" in a.status()["lastCall"]["endReason"], a.status()

        # The button calls the (only) peer through the broker too.
        r = a.ctl("press")
        assert r.returncode == 0, r.stderr
        assert wait(lambda: frames(b) > FRAMES, 15), a.log() + "\n----\n" + b.log()
        sent = broker_status(a)
        assert sent["bytesSent"] > 0 and sent["refused"] == {}, sent
        m = metrics(ha)
        assert 'videophone_broker_connected 1' in m and 'videophone_signalling_refused_total{reason="replayed"} 0' in m, m
        assert 'videophone_peer_online{peer="b"} 1' in m, m
        if os.environ.get("MQTT_TEST_VERBOSE"):
            print(a.log(), "\n----\n", b.log(), "\n----\n", m)
        a.stop()
        b.stop()
    finally:
        turn.kill()
        broker.kill()
