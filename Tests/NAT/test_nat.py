"""Calls across NATs: every pairing of mapping and filtering behaviour, with coturn as the
STUN server. The selected pair is direct wherever a direct path exists."""
import os
import time

import pytest

from conftest import caller_and_callee, start_coturn, wait

# (A's NAT, B's NAT, whether a direct path exists)
PAIRINGS = [
    (("eim", "eif"), ("eim", "eif"), True),
    (("eim", "adf"), ("eim", "adf"), True),
    (("eim", "apdf"), ("eim", "apdf"), True),
    (("eim", "eif"), ("apdm", "apdf"), True),
    (("apdm", "apdf"), ("eim", "eif"), True),
    (("eim", "apdf"), ("apdm", "apdf"), False),
    (("apdm", "apdf"), ("apdm", "apdf"), False),
]




@pytest.mark.parametrize("nat_a,nat_b,direct", [p for p in PAIRINGS if p[2]], ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
def test_direct_call_through_nats(bed, workdir, nat_a, nat_b, direct):
    turn = start_coturn(bed, workdir)
    try:
        stun = 'stun_servers = ["10.200.0.1:3478"]'
        local_a, remote_a, local_b, _ = call_and_check(bed, workdir, nat_a, nat_b, stun, stun, timeout=10)
        assert local_a == "host" and remote_a in ("srflx", "prflx", "host"), (local_a, remote_a)
        assert local_b == "host"
    finally:
        turn.kill()

TURN_UDP = 'stun_servers = ["10.200.0.1:3478"]\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nusername = "vp"\ncredential = "turn-secret"'


def call_and_check(bed, workdir, nat_a, nat_b, extra_a, extra_b, block_udp_a=False, timeout=15):
    """Calls b from a across the NATs; asserts video both ways; returns the pair types
    (a local, a remote, b local, b remote)."""
    a, b, _ = caller_and_callee(bed, workdir, f"[ice]\n{extra_a}", f"[ice]\n{extra_b}", nat_a, nat_b,
                                prepare=bed.block_udp if block_udp_a else None)
    try:
        r = a.ctl("call", "b")
        assert r.returncode == 0, r.stderr + a.log()
        ok = wait(lambda: (a.stat("inbound-rtp", "video", "framesReceived") or 0) > 30
                  and (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, timeout)
        assert ok, a.log() + "\n----\n" + b.log()
        return (a.stat("candidate-pair", None, "localCandidateType"), a.stat("candidate-pair", None, "remoteCandidateType"),
                b.stat("candidate-pair", None, "localCandidateType"), b.stat("candidate-pair", None, "remoteCandidateType"))
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("nat_a,nat_b,direct", [p for p in PAIRINGS if not p[2]], ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
def test_relayed_call_where_no_direct_path_exists(bed, workdir, nat_a, nat_b, direct):
    turn = start_coturn(bed, workdir)
    try:
        types = call_and_check(bed, workdir, nat_a, nat_b, TURN_UDP, TURN_UDP)
        assert "relay" in types, types
    finally:
        turn.kill()


def test_a_direct_path_is_preferred_even_with_turn_configured(bed, workdir):
    turn = start_coturn(bed, workdir)
    try:
        types = call_and_check(bed, workdir, ("eim", "eif"), ("eim", "eif"), TURN_UDP, TURN_UDP)
        assert "relay" not in types, types
    finally:
        turn.kill()


def test_wrong_turn_credentials_are_logged_once_and_do_not_delay_a_direct_call(bed, workdir):
    turn = start_coturn(bed, workdir)
    try:
        bad = 'stun_servers = ["10.200.0.1:3478"]\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nusername = "vp"\ncredential = "wrong"'
        a, b, _ = caller_and_callee(bed, workdir, f"[ice]\n{bad}", f"[ice]\n{bad}")
        try:
            start = time.monotonic()
            assert a.ctl("call", "b").returncode == 0
            assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 0, 5)
            assert time.monotonic() - start < 2.0
            assert wait(lambda: "wrong credentials" in a.log(), 5)
            assert a.log().count("TURN allocation failed") == 1
            assert "10.200.0.1:3478" in [l for l in a.log().splitlines() if "TURN allocation failed" in l][0]
            assert "wrong" not in [l for l in a.log().splitlines() if "TURN allocation failed" in l][0].split("REASON=")[0]
        finally:
            a.stop()
            b.stop()
    finally:
        turn.kill()


def test_unreachable_turn_server_does_not_delay_a_direct_call(bed, workdir):
    # The TURN server named is not there (coturn serves STUN only, elsewhere).
    turn = start_coturn(bed, workdir)
    cfg = 'stun_servers = ["10.200.0.1:3478"]\n\n[[turn]]\nurl = "turn:10.200.0.99:3478?transport=udp"\nusername = "vp"\ncredential = "x"'
    a, b, _ = caller_and_callee(bed, workdir, f"[ice]\n{cfg}", f"[ice]\n{cfg}")
    try:
        start = time.monotonic()
        assert a.ctl("call", "b").returncode == 0
        assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 0, 5), a.log() + b.log()
        assert time.monotonic() - start < 2.0
        # Given up on after its retransmissions, and said once, with the server named.
        assert wait(lambda: "TURN allocation failed" in a.log(), 20)
        line = [l for l in a.log().splitlines() if "TURN allocation failed" in l]
        assert len(line) == 1 and "10.200.0.99:3478" in line[0]
    finally:
        a.stop()
        b.stop()
        turn.kill()


@pytest.mark.parametrize("uri", ["turn:10.200.0.1:3478?transport=tcp", "turns:10.200.0.1:5349"], ids=["tcp", "tls"])
def test_with_udp_blocked_turn_over_tcp_and_tls_still_connects(bed, workdir, uri):
    turn = start_coturn(bed, workdir)
    try:
        # The device checks coturn's self-signed certificate (it names 10.200.0.1) against it.
        ca = os.path.join(workdir, "turn.crt")
        a_cfg = f'[[turn]]\nurl = "{uri}"\nusername = "vp"\ncredential = "turn-secret"\nca = "{ca}"'
        types = call_and_check(bed, workdir, ("eim", "apdf"), ("eim", "apdf"), a_cfg, TURN_UDP, block_udp_a=True)
        assert types[0] == "relay", types
    finally:
        turn.kill()


def test_an_address_change_restarts_ice_and_media_comes_back(bed, workdir):
    from testbed import sh
    turn = start_coturn(bed, workdir)
    try:
        stun = '[ice]\nstun_servers = ["10.200.0.1:3478"]'
        a, b, host_a = caller_and_callee(bed, workdir, stun, stun, bind_all=True,
                                         prepare=lambda h: sh("ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"))
        ip_a = a.ip
        try:
            assert a.ctl("call", "b").returncode == 0
            assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10), a.log() + b.log()
            # The device moves to another address on its network.
            sh("ip", "-n", host_a, "addr", "add", "192.168.1.3/24", "dev", "eth0")
            sh("ip", "-n", host_a, "addr", "del", f"{ip_a}/24", "dev", "eth0")
            changed = time.monotonic()
            time.sleep(0.3)
            stalled = b.stat("inbound-rtp", "video", "framesReceived")
            assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > stalled + 30, 10), a.log() + b.log()
            back = time.monotonic() - changed
            assert "ICE restart" in a.log() and "ICE restart asked for by the peer" in b.log()
            assert back < 2.5, f"media back after {back:.2f} s"
            assert a.status()["state"] == "in-call" and b.status()["state"] == "in-call"
            assert (a.stat("inbound-rtp", "video", "framesReceived") or 0) > 60
        finally:
            a.stop()
            b.stop()
    finally:
        turn.kill()


def test_a_bandwidth_drop_brings_the_video_rate_down_and_the_call_survives(bed, workdir):
    """The link towards the callee drops to 1 Mbit/s (tc tbf) in a 2 Mbit/s call: the loss
    reports bring the caller's target under it within seconds and frames keep arriving;
    when the link comes back the rate climbs again."""
    from testbed import sh
    turn = start_coturn(bed, workdir)
    video = '[ice]\nstun_servers = ["10.200.0.1:3478"]\n[video]\nwidth = 1280\nheight = 720\nfps = 30\nbitrate_kbps = 2000'
    a, b, _ = caller_and_callee(bed, workdir, video, video)
    try:
        assert a.ctl("call", "b").returncode == 0
        assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10), a.log() + b.log()
        assert a.stat("outbound-rtp", "video", "targetBitrate") == 2_000_000
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "add", "dev", "w2", "root", "tbf", "rate", "1mbit", "burst", "16kb", "latency", "100ms")
        assert wait(lambda: (a.stat("outbound-rtp", "video", "targetBitrate") or 1e9) <= 1_000_000, 8), a.log()
        frames = b.stat("inbound-rtp", "video", "framesReceived")
        time.sleep(5)
        after = b.stat("inbound-rtp", "video", "framesReceived")
        print(f"frames at the callee in 5 s under the limit: {after - frames}")
        # Survives: video keeps coming (the bench measures the frame rate and freezes).
        assert after > frames + 15, f"video stalled under the limit: {after - frames} frames in 5 s"
        assert a.status()["state"] == "in-call"
        sh("ip", "netns", "exec", bed.wan, "tc", "qdisc", "del", "dev", "w2", "root")
        assert wait(lambda: (a.stat("outbound-rtp", "video", "targetBitrate") or 0) >= 1_200_000, 30), a.log()
    finally:
        a.stop()
        b.stop()
        turn.kill()



def test_random_loss_is_repaired_by_rtx_and_the_picture_keeps_coming(bed, workdir):
    """3 % of the datagrams towards the callee are dropped (nftables, numgen random): the
    callee NACKs, the caller resends on the RTX stream (RFC 4588, negotiated between the
    devices), the callee rebuilds the originals, and frames keep completing. Random loss on
    a path with room must not be read as congestion: the target stays high."""
    from testbed import sh
    turn = start_coturn(bed, workdir)
    video = '[ice]\nstun_servers = ["10.200.0.1:3478"]\n[video]\nwidth = 640\nheight = 480\nfps = 30\nbitrate_kbps = 1500'
    a, b, _ = caller_and_callee(bed, workdir, video, video)
    try:
        assert a.ctl("call", "b").returncode == 0
        assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 10), a.log() + b.log()
        assert "rtx=" in a.status()["call"]["videoCodec"]
        sh("ip", "netns", "exec", bed.wan, "nft", "-f", "-", input="""table inet impair {
  chain forward { type filter hook forward priority 0; oifname "w2" meta l4proto udp numgen random mod 100 < 3 drop; }
}""")
        frames = b.stat("inbound-rtp", "video", "framesReceived")
        time.sleep(8)
        after = b.stat("inbound-rtp", "video", "framesReceived")
        sent = a.stat("outbound-rtp", "video", "retransmittedPacketsSent") or 0
        repaired = b.stat("inbound-rtp", "video", "retransmittedPacketsReceived") or 0
        print(f"8 s at 3 % loss: {after - frames} frames, {sent} resent, {repaired} repaired by RTX, "
              f"target {a.stat('outbound-rtp', 'video', 'targetBitrate')}")
        assert sent > 0 and repaired > 0, a.log() + b.log()
        assert after - frames > 8 * 20, f"only {after - frames} frames in 8 s at 3 % loss"
        assert (a.stat("outbound-rtp", "video", "targetBitrate") or 0) >= 1_000_000
    finally:
        sh("ip", "netns", "exec", bed.wan, "nft", "delete", "table", "inet", "impair", check=False)
        a.stop()
        b.stop()
        turn.kill()


def start_rest_coturn(bed, workdir, port, relay_ports):
    """coturn with use-auth-secret (the TURN REST scheme) on 10.200.0.1:PORT. Servers
    that share the secret accept the same credentials: no shared user database needed."""
    import subprocess
    conf = os.path.join(workdir, f"turnserver-rest-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""listening-ip=10.200.0.1
relay-ip=10.200.0.1
listening-port={port}
min-port={relay_ports[0]}
max-port={relay_ports[1]}
realm=videophone.test
use-auth-secret
static-auth-secret=north-wind
fingerprint
no-cli
no-dtls
no-tls
simple-log
log-file={os.path.join(workdir, f"turn-rest-{port}.log")}
""")
    proc = subprocess.Popen(["ip", "netns", "exec", bed.wan, "turnserver", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def test_a_relayed_call_with_time_limited_turn_credentials(bed, workdir):
    """The devices hold only the shared secret and derive an expiring username and password
    per call; both NATs symmetric, so the call has to go through the relay."""
    turn = start_rest_coturn(bed, workdir, 3478, (49152, 49599))
    try:
        rest = 'stun_servers = ["10.200.0.1:3478"]\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nsecret = "north-wind"'
        types = call_and_check(bed, workdir, ("apdm", "apdf"), ("apdm", "apdf"), rest, rest)
        assert "relay" in (types[0], types[1]), types
    finally:
        turn.kill()


def test_with_one_of_two_turn_servers_dead_a_relayed_call_goes_through_the_other(bed, workdir):
    first = start_rest_coturn(bed, workdir, 3478, (49152, 49599))
    second = start_rest_coturn(bed, workdir, 3479, (49600, 49999))
    try:
        first.kill()
        first.wait(5)
        both = ('stun_servers = ["10.200.0.1:3479"]\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nsecret = "north-wind"'
                '\n\n[[turn]]\nurl = "turn:10.200.0.1:3479?transport=udp"\nsecret = "north-wind"')
        types = call_and_check(bed, workdir, ("apdm", "apdf"), ("apdm", "apdf"), both, both)
        assert "relay" in (types[0], types[1]), types
    finally:
        second.kill()


REDIS_DB = "ip=127.0.0.1 port=6379 dbname=0 connect_timeout=5"


def start_redis(bed, workdir):
    """Debian's redis-server in the WAN namespace, on its loopback: the user database that
    a pool of coturns shares (coturn's `redis-userdb`). Nothing on disk."""
    import subprocess
    proc = subprocess.Popen(["ip", "netns", "exec", bed.wan, "redis-server", "--bind", "127.0.0.1", "--port", "6379",
                             "--save", "", "--appendonly", "no", "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = wait(lambda: proc.poll() is not None or subprocess.run(["ip", "netns", "exec", bed.wan, "redis-cli", "-h", "127.0.0.1", "ping"],
                                                                 capture_output=True, text=True).stdout.strip() == "PONG", 5)
    assert ok and proc.poll() is None, "redis-server did not start"
    return proc


def start_db_coturn(bed, workdir, port, relay_ports):
    """coturn with long-term credentials whose users live in the shared Redis only (no
    `user=` line in its configuration)."""
    import subprocess
    conf = os.path.join(workdir, f"turnserver-db-{port}.conf")
    log = os.path.join(workdir, f"turn-db-{port}.log")
    with open(conf, "w") as f:
        f.write(f"""listening-ip=10.200.0.1
relay-ip=10.200.0.1
listening-port={port}
min-port={relay_ports[0]}
max-port={relay_ports[1]}
realm=videophone.test
lt-cred-mech
redis-userdb="{REDIS_DB}"
fingerprint
verbose
no-cli
no-dtls
no-tls
simple-log
log-file={log}
""")
    proc = subprocess.Popen(["ip", "netns", "exec", bed.wan, "turnserver", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = wait(lambda: proc.poll() is not None or sh_out(bed, "ss", "-Hlun", f"sport = :{port}"), 5)
    assert ok and proc.poll() is None, f"coturn on {port} did not start"
    return proc, log


def sh_out(bed, *args):
    import subprocess
    return subprocess.run(["ip", "netns", "exec", bed.wan, *args], capture_output=True, text=True).stdout.strip()


def allocations(log, user):
    """Successful allocations coturn logged for `user`."""
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    return sum(1 for line in text.splitlines() if f"user <{user}>" in line and "ALLOCATE processed, success" in line)


def test_a_turn_pool_sharing_one_redis_user_database_survives_the_loss_of_a_server(bed, workdir):
    """Two coturns share one user database in Redis; the user the devices log in with
    exists only there (added with coturn's own turnadmin). Both NATs symmetric: the call
    must be relayed. A first call allocates on both servers; then the first server listed
    dies, and a second call goes through the other."""
    import subprocess
    redis = start_redis(bed, workdir)
    user, password = "fleet-7f3a", "fleet-pass-91c2"
    r = subprocess.run(["ip", "netns", "exec", bed.wan, "turnadmin", "-a", "-N", REDIS_DB, "-u", user, "-r", "videophone.test", "-p", password],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sh_out(bed, "redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", f"turn/realm/videophone.test/user/{user}/*"), "user not in Redis"
    first, first_log = start_db_coturn(bed, workdir, 3478, (49152, 49599))
    second, second_log = start_db_coturn(bed, workdir, 3479, (49600, 49999))
    pool = (f'[ice]\nstun_servers = ["10.200.0.1:3479"]\n\n[[turn]]\nurl = "turn:10.200.0.1:3478?transport=udp"\nusername = "{user}"\ncredential = "{password}"'
            f'\n\n[[turn]]\nurl = "turn:10.200.0.1:3479?transport=udp"\nusername = "{user}"\ncredential = "{password}"')
    a, b, _ = caller_and_callee(bed, workdir, pool, pool, ("apdm", "apdf"), ("apdm", "apdf"))

    def relayed_call():
        """Calls b, waits for video both ways; returns the relay ports of the selected pair."""
        assert a.ctl("call", "b").returncode == 0, a.log()
        ok = wait(lambda: (a.stat("inbound-rtp", "video", "framesReceived") or 0) > 30
                  and (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 15)
        assert ok, a.log() + "\n----\n" + b.log()
        pair = {k: a.stat("candidate-pair", None, k) for k in ("localCandidateType", "localAddress", "remoteCandidateType", "remoteAddress")}
        ports = [int(pair[f"{side}Address"].rsplit(":", 1)[1]) for side in ("local", "remote") if pair[f"{side}CandidateType"] == "relay"]
        assert ports, pair  # both NATs symmetric: no direct path
        assert a.ctl("hangup").returncode == 0
        assert wait(lambda: a.state() == "idle" and b.state() == "idle", 5)
        return ports

    try:
        relayed_call()
        # Both servers found the user in the shared database (each device allocates on all).
        assert allocations(first_log, user) > 0 and allocations(second_log, user) > 0, open(first_log, errors="replace").read()[-2000:]
        first.kill()
        first.wait(5)
        before = allocations(second_log, user)
        ports = relayed_call()
        # Through the server that is left: its relay ports are 49600-49999.
        assert all(49600 <= p <= 49999 for p in ports), ports
        assert allocations(second_log, user) > before
    finally:
        a.stop()
        b.stop()
        for p in (first, second, redis):
            if p.poll() is None:
                p.kill()


def test_burst_loss_with_jitter_and_reordering_through_the_relay_keeps_the_picture(bed, workdir):
    """The impairment bed's smoke (make bench runs the six scenarios): the link between the
    sites goes through the user-space relay with 2 % loss in bursts of 5, 40 ms ± 15 ms
    one-way delay and reordering, both ways. NACK and RTX repair what the bursts take, the
    frame assembler takes packets out of order, and the picture keeps coming with short
    freezes only (the callee's own freeze counters)."""
    turn = start_coturn(bed, workdir)
    video = '[ice]\nstun_servers = ["10.200.0.1:3478"]\n[video]\nwidth = 640\nheight = 480\nfps = 30\nbitrate_kbps = 1500'
    a, b, _ = caller_and_callee(bed, workdir, video, video)
    relay = bed.impair(seed=3)
    try:
        assert a.ctl("call", "b").returncode == 0
        assert wait(lambda: (b.stat("inbound-rtp", "video", "framesReceived") or 0) > 30, 15), a.log() + b.log()
        relay.set("loss=0.02 burst=5 delay=40 jitter=15 reorder=1")
        before = b.status()
        time.sleep(8)
        after = b.status()
        counts = relay.stats()
        d = lambda f: (b.stat("inbound-rtp", "video", f, after) or 0) - (b.stat("inbound-rtp", "video", f, before) or 0)  # noqa: E731
        print(f"8 s through the relay: {d('framesReceived')} frames, freezes {d('freezeCount')} "
              f"({d('totalFreezesDuration') * 1000:.0f} ms), {d('retransmittedPacketsReceived')} repaired by RTX, relay {counts}")
        assert counts["lost"] > 0 and counts["reordered"] > 0, f"the relay did not impair: {counts}"
        assert d("retransmittedPacketsReceived") > 0, a.log() + b.log()
        assert d("framesReceived") > 8 * 20, f"only {d('framesReceived')} frames in 8 s"
        assert d("totalFreezesDuration") < 1.5, f"frozen {d('totalFreezesDuration')} s of 8"
        assert b.status().get("state") == "in-call"
    finally:
        relay.close()
        a.stop()
        b.stop()
        turn.kill()
