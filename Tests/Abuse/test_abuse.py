"""Abuse: real videophoned processes in network namespaces, under floods and garbage that
a device on a home network can get. Each test asserts the figures it prints (see the
'abuse figures' section at the end of the run). Sizes for make test are affordable on two
cores; bench_abuse.py runs the full sizes. Environment: ABUSE_GETS (default 50000),
ABUSE_CALLS (150), ABUSE_MDNS (80000 datagrams)."""
import os
import time

import pytest

import abusebed as ab
from abusebed import wait

GETS = int(os.environ.get("ABUSE_GETS", "50000"))
CALLS = int(os.environ.get("ABUSE_CALLS", "150"))
MDNS_DATAGRAMS = int(os.environ.get("ABUSE_MDNS", "80000"))
RSS_GROWTH_KB = 1024


def grown(before, after):
    return {k: after[k] - before[k] for k in before}


# ---------------------------------------------------------------- 50 000 GETs


def test_many_gets_from_four_clients_leave_threads_maps_and_memory_where_they_were(bed, figures):
    b = bed.device("b")
    warm = ab.http_load(bed.b_ip, 8080, 2000, bed.sources)
    assert sum(warm["statuses"].values()) == 2000, warm["errors"]
    before = ab.settled_footprint(b)
    load = ab.http_load(bed.b_ip, 8080, GETS, bed.sources)
    alive = b.alive()
    status_now = ab.request(bed.b_ip, 8080, "GET", "/status", timeout=5)[0] if alive else None
    after = ab.settled_footprint(b) if alive else None
    lat = load["latencies_ms"]
    # Any answer counts (429 included: the rate limiter covers GETs); what must not happen
    # is no answer at all.
    answered = sum(v for k, v in load["statuses"].items() if k.isdigit())
    figures(f"{load['sent']} GETs in {load['seconds']:.1f} s ({load['sent'] / load['seconds']:.0f}/s), statuses {load['statuses']}, "
            f"errors {load['errors']}, latency p50 {lat[len(lat) // 2]:.1f} ms p99 {lat[int(len(lat) * 0.99)]:.1f} ms")
    figures(f"before: {ab.describe(before)}; after: {ab.describe(after) if after else 'daemon gone'}")
    assert alive, f"videophoned died under {GETS} GETs (exit {b.proc.returncode}); answered {answered}:\n{b.log()[-2000:]}"
    assert status_now == 200, f"GET /status after the load: {status_now}"
    assert answered >= 0.999 * load["sent"], f"only {answered} of {load['sent']} answered: {load['statuses']} {load['errors']}"
    d = grown(before, after)
    assert d["threads"] == 0, f"threads {before['threads']} → {after['threads']}"
    assert d["maps"] <= 2, f"mappings {before['maps']} → {after['maps']} (thread stacks not released?)"
    assert d["anon_kb"] <= RSS_GROWTH_KB, f"anonymous RSS grew {d['anon_kb']} kB over {GETS} GETs"


# ---------------------------------------------------------------- slow headers


def test_forty_slow_header_connections_do_not_delay_a_call(bed, figures):
    a, b = bed.pair()
    # A first call pays for one-time set-up; the one measured is the second.
    baseline, err = ab.call_once(a, b)
    assert baseline is not None, err
    assert ab.hang_up(a, b)
    loris = ab.SlowHeaders(bed.b_ip, 8080, 40, interval=0.5, sources=bed.sources).start()
    try:
        time.sleep(6.0)  # past a 5 s header deadline: the server has had to deal with them
        held = loris.open_now
        setup, err = ab.call_once(a, b, timeout=10)
        status_during = ab.request(bed.b_ip, 8080, "GET", "/status", timeout=5)
    finally:
        loris.stop()
    figures(f"call set-up {baseline * 1000:.0f} ms without, {setup * 1000 if setup else float('nan'):.0f} ms with 40 slow connections "
            f"({held} open at the call; {loris.opened} opened, {loris.closed_by_server} closed by the server, {loris.bytes_sent} bytes sent); "
            f"GET /status meanwhile: {status_during[0] or status_during[2]}")
    assert b.alive(), b.log()[-2000:]
    assert setup is not None, f"{err}\n{b.log()[-2000:]}"
    assert setup <= 1.0, f"call took {setup:.2f} s to set up under 40 slow connections"
    assert status_during[0] == 200, f"GET /status under slow connections: {status_during}"
    assert ab.hang_up(a, b)


# ---------------------------------------------------------------- malformed offers and PATCHes


FINGERPRINT = ":".join(f"{i * 7 % 256:02X}" for i in range(32))
SECTION = """m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Abcd\r
a=ice-pwd:AbcdefghijklmnopqrstuvWX\r
a=ice-options:trickle\r
a=fingerprint:sha-256 {fp}\r
a=setup:actpass\r
a=mid:{mid}\r
a=sendrecv\r
a=rtcp-mux\r
a=rtpmap:{pt} {codec}\r
{fmtp}a=ssrc:{ssrc} cname:abuse\r
"""


def offer(**changes):
    """A well-formed offer (audio and video, no candidates), with `changes` applied to it."""
    head = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    audio = SECTION.format(kind="audio", pt=111, fp=FINGERPRINT, mid=0, codec="opus/48000/2", fmtp="a=fmtp:111 minptime=10;useinbandfec=1\r\n", ssrc=1111)
    video = SECTION.format(kind="video", pt=102, fp=FINGERPRINT, mid=1, codec="H264/90000",
                           fmtp="a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n", ssrc=2222)
    text = head + audio + video
    for old, new in changes.get("replace", []):
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


def malformed_offers():
    """(what, request bytes after the request line and Host) for POST /call."""
    long_line = b"a=" + b"x" * 200_000 + b"\r\n"
    bodies = [
        ("empty body", b""),
        ("one line of text", b"garbage\r\n"),
        ("binary noise", bytes((i * 97 + 13) % 256 for i in range(2048))),
        ("version line only", b"v=0\r\n"),
        ("session part only, no media", b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"),
        ("version 1", offer(replace=[("v=0", "v=1")])),
        ("m= port '/'", offer(replace=[("m=video 9 ", "m=video / ")])),
        ("m= port 99999", offer(replace=[("m=audio 9 ", "m=audio 99999 ")])),
        ("m= lines with no format", offer(replace=[("SAVPF 102", "SAVPF"), ("SAVPF 111", "SAVPF")])),
        ("m= lines with 3000 formats, none valid", offer(replace=[("SAVPF 102", "SAVPF " + " ".join(str(i) for i in range(200, 3200))),
                                                                  ("SAVPF 111", "SAVPF " + " ".join(str(i) for i in range(128, 200)))])),
        ("m= lines with non-numeric formats", offer(replace=[("SAVPF 111", "SAVPF opus"), ("SAVPF 102", "SAVPF h264")])),
        ("no fingerprint", offer(replace=[(f"a=fingerprint:sha-256 {FINGERPRINT}\r\n", "")])),
        ("fingerprint of 5 bytes", offer(replace=[(FINGERPRINT, "AB:CD:EF:01:02")])),
        ("fingerprint not hex", offer(replace=[(FINGERPRINT, "ZZ:" * 31 + "ZZ")])),
        ("fingerprint of an unknown hash", offer(replace=[("sha-256 ", "sha-999 ")])),
        ("no ICE credentials", offer(replace=[("a=ice-ufrag:Abcd\r\n", ""), ("a=ice-pwd:AbcdefghijklmnopqrstuvWX\r\n", "")])),
        # RFC 8839: ice-ufrag is 4–256 ice-chars, ice-pwd 22–256.
        ("ICE ufrag of 20 000 characters", offer(replace=[("a=ice-ufrag:Abcd", "a=ice-ufrag:" + "u" * 20000)])),
        ("ICE credentials with NUL bytes", offer(replace=[("a=ice-ufrag:Abcd", "a=ice-ufrag:Ab\0d"), ("a=ice-pwd:Abcdefghij", "a=ice-pwd:Abcd\0fghij")])),
        ("ICE ufrag of invalid UTF-8", offer().replace(b"a=ice-ufrag:Abcd", b"a=ice-ufrag:\xff\xfe\xc3\x28")),
        # RFC 8842: active, passive, actpass or holdconn.
        ("setup attribute of nonsense", offer(replace=[("a=setup:actpass", "a=setup:sideways")])),
        ("rtpmap without a clock rate", offer(replace=[("H264/90000", "H264"), ("opus/48000/2", "opus")])),
        ("no codec we have", offer(replace=[("H264/90000", "VP8/90000"), ("opus/48000/2", "PCMU/8000"),
                                             ("a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n", ""),
                                             ("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")])),
        ("one line of 200 000 bytes", long_line),
    ]
    cases = []
    for what, body in bodies:
        cases.append((what, b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(body) + body, False))
    base = offer()
    cases += [
        ("no Content-Type", b"Content-Length: %d\r\n\r\n" % len(base) + base, False),
        ("Content-Type text/plain", b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(base) + base, False),
        ("Content-Length -1", b"Content-Type: application/sdp\r\nContent-Length: -1\r\n\r\n" + base, False),
        ("Content-Length not a number", b"Content-Type: application/sdp\r\nContent-Length: lots\r\n\r\n" + base, False),
        ("two different Content-Lengths", b"Content-Type: application/sdp\r\nContent-Length: 10\r\nContent-Length: %d\r\n\r\n" % len(base) + base, False),
        ("body shorter than Content-Length", b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % (len(base) + 500) + base, True),
        ("body of 300 kB", b"Content-Type: application/sdp\r\nContent-Length: 300000\r\n\r\n" + b"a=x\r\n" * 60000, False),
    ]
    return cases


def malformed_patches(client_ip):
    frag = "application/trickle-ice-sdpfrag"
    bodies = [
        ("text, not an sdpfrag", "hello world\r\n"),
        ("candidate of one word", "a=candidate:garbage\r\n"),
        ("candidate with port 99999", f"a=candidate:1 1 udp 2130706431 {client_ip} 99999 typ host\r\n"),
        ("candidate with address 999.1.1.1", "a=candidate:1 1 udp 2130706431 999.1.1.1 5000 typ host\r\n"),
        ("candidate with a negative priority", f"a=candidate:1 1 udp -5 {client_ip} 5000 typ host\r\n"),
        ("candidate of component 0", f"a=candidate:1 0 udp 1 {client_ip} 5000 typ host\r\n"),
        ("candidate of an unknown type", f"a=candidate:1 1 udp 1 {client_ip} 5000 typ bogus\r\n"),
        ("candidate of an unknown transport", f"a=candidate:1 1 sctp 1 {client_ip} 5000 typ host\r\n"),
        ("ICE restart with a ufrag and no pwd", "a=ice-ufrag:only\r\n"),
    ]
    cases = [(what, f"Content-Type: {frag}\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode(), False) for what, body in bodies]
    noise = bytes((i * 31 + 7) % 256 for i in range(1024))
    cases += [
        ("binary noise", f"Content-Type: {frag}\r\nContent-Length: {len(noise)}\r\n\r\n".encode() + noise, False),
        ("Content-Type text/plain", b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\na=candidate:x", False),
        ("Content-Length -5", f"Content-Type: {frag}\r\nContent-Length: -5\r\n\r\n".encode(), False),
        ("body shorter than Content-Length", f"Content-Type: {frag}\r\nContent-Length: 900\r\n\r\na=end-of-candidates\r\n".encode(), True),
        ("body of 300 kB", f"Content-Type: {frag}\r\nContent-Length: 300000\r\n\r\n".encode() + b"a=x\r\n" * 60000, False),
    ]
    return cases


def send_all(bed, method, path, cases, token, device=None):
    """Sends each case (paced under the per-source rate limit); returns [(what, status, error)].
    With `device` (idle), a case that left a call behind is noted in its error and hung up,
    so the next case meets an idle device too."""
    results = []
    for what, rest, half_close in cases:
        for _ in range(3):
            data = f"{method} {path} HTTP/1.1\r\nHost: {bed.b_ip}:8080\r\nAuthorization: Bearer {token}\r\n".encode() + rest
            status, _, err = ab.raw_http(bed.b_ip, 8080, data, timeout=15, source=bed.sources[2], half_close=half_close)
            if status != 429:
                break
            time.sleep(1.5)
        if device is not None and device.alive():
            state = device.state()
            if state != "idle":
                err = f"left the device {state}"
                device.ctl("hangup")
                wait(lambda: device.state() == "idle", 5)
        results.append((what, status, err))
        time.sleep(0.12)
    return results


def not_4xx(results):
    return [(w, s, e) for w, s, e in results if s is None or not 400 <= s < 500 or s == 429 or e]


def test_malformed_offers_and_patches_get_4xx_and_leave_the_daemon_and_the_call_alone(bed, figures):
    a, b = bed.pair()
    idle = send_all(bed, "POST", "/call", malformed_offers(), "b-token", device=b)
    idle_alive = b.alive()
    idle_state = b.state() if idle_alive else None
    assert idle_alive, f"videophoned died on malformed offers: {idle}\n{b.log()[-3000:]}"
    setup, err = ab.call_once(a, b)
    assert setup is not None, f"after the malformed offers, a call failed: {err}; idle state was {idle_state}"
    assert wait(lambda: ab.video_frames(a) > 20 and ab.video_frames(b) > 20, 5)
    call_id = b.status()["call"]["id"]
    s0, t0 = (ab.video_frames(a), ab.video_frames(b)), time.monotonic()
    busy = send_all(bed, "POST", "/call", malformed_offers(), "b-token")
    patches = send_all(bed, "PATCH", f"/call/{call_id}", malformed_patches(bed.client_ip), "b-token")
    patches += send_all(bed, "PATCH", "/call/ffffffffffffffff", malformed_patches(bed.client_ip)[:1], "b-token")
    alive = b.alive() and a.alive()
    st = b.status() if alive else {}
    s1, t1 = (ab.video_frames(a), ab.video_frames(b)), time.monotonic()
    expected = 0.5 * ab.FPS * (t1 - t0)
    wrong = [("idle offer",) + r for r in not_4xx(idle)] + [("offer in a call",) + r for r in not_4xx(busy)] + [("PATCH",) + r for r in not_4xx(patches)]
    figures(f"{len(idle)} offers idle, {len(busy)} in a call, {len(patches)} PATCHes; state after the idle ones: {idle_state}; "
            f"video frames over {t1 - t0:.1f} s: a +{s1[0] - s0[0]}, b +{s1[1] - s0[1]} (want ≥ {expected:.0f}); not 4xx: {len(wrong)}")
    for w in wrong:
        figures(f"  not 4xx: {w}")
    assert alive, f"a daemon died: {wrong}\n{b.log()[-3000:]}"
    assert idle_state == "idle", f"malformed offers left b {idle_state}"
    assert st.get("state") == "in-call" and st.get("call", {}).get("id") == call_id, f"the call did not survive: {st.get('state')} {st.get('lastCall')}"
    assert s1[0] - s0[0] >= expected and s1[1] - s0[1] >= expected, f"video slowed: a +{s1[0] - s0[0]}, b +{s1[1] - s0[1]} frames in {t1 - t0:.1f} s"
    assert not wrong, f"{len(wrong)} malformed requests did not get a 4xx: {wrong}"
    assert ab.hang_up(a, b)


# ---------------------------------------------------------------- mDNS flood


def test_mdns_flood_leaves_the_daemon_working_and_its_memory_flat(bed, figures):
    a, b = bed.pair(network="mdns = true")  # candidates hidden behind .local names: calls need mDNS
    for _ in range(2):
        setup, err = ab.call_once(a, b)
        assert setup is not None, err
        assert ab.hang_up(a, b)
    ab.MDNSFlood(bed.client_ip, [bed.a_ip, bed.b_ip], 2000, seed=2).start().join(30)  # the resolver's own first allocations
    before = {d.name: ab.settled_footprint(d) for d in (a, b)}
    flood = ab.MDNSFlood(bed.client_ip, [bed.a_ip, bed.b_ip], MDNS_DATAGRAMS).start()
    time.sleep(1.0)
    during, err_during = ab.call_once(a, b, timeout=10)
    hung = ab.hang_up(a, b) if during else None
    # Memory is judged over the rest of the flood, without the call's own allocations.
    before = {d.name: ab.settled_footprint(d) for d in (a, b)} if a.alive() and b.alive() else before
    sent_before = flood.sent
    flood.join(120)
    alive = a.alive() and b.alive()
    after = {d.name: ab.settled_footprint(d) for d in (a, b)} if alive else {}
    setup_after, err_after = ab.call_once(a, b) if alive else (None, "daemon gone")
    figures(f"{flood.sent} datagrams ({flood.names} names never asked for) at ~{flood.rate}/s; call during the flood "
            f"{'%.0f ms' % (during * 1000) if during else err_during}, after {'%.0f ms' % (setup_after * 1000) if setup_after else err_after}")
    for name in before:
        figures(f"{name} after {sent_before} datagrams and a call: {ab.describe(before[name])}; after the other {flood.sent - sent_before}: "
                f"{ab.describe(after[name]) if name in after else 'gone'}")
    assert alive, f"a daemon died under the mDNS flood:\n{b.log()[-2000:]}"
    assert during is not None and during <= 5.0, f"call during the flood: {err_during}"
    assert hung
    assert setup_after is not None, err_after
    for name in before:
        d = grown(before[name], after[name])
        assert d["anon_kb"] <= RSS_GROWTH_KB, f"{name}: anonymous RSS grew {d['anon_kb']} kB under {flood.sent - sent_before} mDNS datagrams"
        assert d["threads"] == 0, f"{name}: threads {before[name]['threads']} → {after[name]['threads']}"
    ab.hang_up(a, b)


# ---------------------------------------------------------------- SRTP garbage from a peer with the keys


@pytest.fixture
def loop():
    aiortc_peer = pytest.importorskip("aiortc_peer")
    lp = aiortc_peer.Loop()
    yield lp
    lp.stop()


def test_garbage_rtp_and_rtcp_inside_the_srtp_session_leave_the_call_flowing(bed, loop, figures):
    import aiortc_peer
    b = bed.device("b")
    pc, counters, video, resource, offer_sdp, answer = loop.run(aiortc_peer.offer_to(b.url, "b-token"))
    try:
        assert wait(lambda: counters.connected and counters.video_decoded > 10 and ab.video_frames(b) > 10, 20), b.log()[-2000:]
        garbage = ab.SRTPGarbage(pc, answer)

        def sample():
            return counters.video_decoded, ab.video_frames(b), time.monotonic(), video.sent

        def rates(x, y):
            """(frames/s the peer decoded, frames/s the device received, share of what the peer sent)"""
            return (y[0] - x[0]) / (y[2] - x[2]), (y[1] - x[1]) / (y[2] - x[2]), (y[1] - x[1]) / max(1, y[3] - x[3])

        s0 = sample()
        time.sleep(3)
        s1 = sample()
        # Phase 1: whole garbage packets (RTP on foreign SSRCs, RTCP of every kind) beside
        # the real stream, which is untouched: both directions should not notice.
        loop.run(garbage.inject(4.0, per_second=300), timeout=30)
        s2 = sample()
        # Phase 2: and every 20th real RTP packet with its payload replaced: the frames
        # they belong to are lost, the rest must keep coming.
        garbage.active = True
        loop.run(garbage.inject(4.0, per_second=300), timeout=30)
        garbage.active = False
        s3 = sample()
        time.sleep(3)
        s4 = sample()
        alive = b.alive()
        st = b.status() if alive else {}
        before, injected, mangled, after = rates(s0, s1), rates(s1, s2), rates(s2, s3), rates(s3, s4)
        figures(f"sent {garbage.injected_rtp} garbage RTP + {garbage.injected_rtcp} RTCP packets, mangled {garbage.mangled} of "
                f"{garbage.real} real ones ({garbage.refused_by_libsrtp} refused by libsrtp); frames/s to peer | to device: "
                f"before {before[0]:.1f} | {before[1]:.1f} ({before[2]:.0%} of sent), garbage packets {injected[0]:.1f} | {injected[1]:.1f} "
                f"({injected[2]:.0%}), and mangled ones {mangled[0]:.1f} | {mangled[1]:.1f} ({mangled[2]:.0%}), "
                f"after {after[0]:.1f} | {after[1]:.1f} ({after[2]:.0%}); "
                f"device srtpFailures {ab_stat(st, 'srtpFailures')}, malformedDatagrams {ab_stat(st, 'malformedDatagrams')}")
        assert alive, f"videophoned died on garbage inside SRTP (exit {b.proc.returncode}):\n{b.log()[-3000:]}"
        assert st.get("state") == "in-call", st
        # From the peer, judged by the share of the frames it sent that the device received
        # (the peer's own encoder shares two cores with the garbage it makes).
        assert injected[0] >= 0.5 * before[0], f"garbage packets slowed the video to the peer: {before[0]:.1f} → {injected[0]:.1f} frames/s"
        assert injected[2] >= 0.5 * before[2], \
            f"garbage packets beside the stream cost the device its video: received {before[2]:.0%} → {injected[2]:.0%} of the frames sent"
        assert mangled[0] >= 0.5 * before[0], f"video to the peer slowed under mangled packets: {before[0]:.1f} → {mangled[0]:.1f} frames/s"
        assert mangled[2] >= 0.1 * before[2], f"video from the peer stopped under mangled packets: {before[2]:.0%} → {mangled[2]:.0%} of the frames sent"
        assert after[0] >= 0.5 * before[0] and after[2] >= 0.5 * before[2], \
            f"the call did not recover: {before} → {after}\n{[x for x in st.get('call', {}).get('stats', []) if x.get('type') == 'outbound-rtp']}\n{b.log()[-3000:]}"
    finally:
        loop.run(pc.close())


def ab_stat(status, field):
    return status.get("call", {}).get("transport", {}).get(field, status.get("call", {}).get(field, "?")) if status else "?"


# ---------------------------------------------------------------- calls in a row


def test_calls_in_a_row_keep_memory_flat(bed, figures):
    a, b = bed.pair()
    warmup = 20
    setups, failures = [], []
    before = None
    for i in range(warmup + CALLS):
        if i == warmup:
            before = {d.name: ab.settled_footprint(d) for d in (a, b)}
        setup, err = ab.call_once(a, b)
        if setup is None:
            failures.append((i, err))
        else:
            setups.append(setup)
        if not ab.hang_up(a, b):
            failures.append((i, f"did not hang up: a {a.state()}, b {b.state()}"))
            wait(lambda: a.state() == "idle" and b.state() == "idle", 10)
        if not (a.alive() and b.alive()):
            break
    alive = a.alive() and b.alive()
    after = {d.name: ab.settled_footprint(d) for d in (a, b)} if alive else {}
    setups.sort()
    figures(f"{len(setups)} of {warmup + CALLS} calls up (median set-up {setups[len(setups) // 2] * 1000:.0f} ms, "
            f"max {setups[-1] * 1000:.0f} ms); {len(failures)} failures {failures[:3]}" if setups else f"no call up: {failures[:3]}")
    for name in before or {}:
        figures(f"{name} after {warmup} warm-up calls: {ab.describe(before[name])}; after {CALLS} more: "
                f"{ab.describe(after[name]) if name in after else 'gone'}")
    assert alive, f"a daemon died: {failures[-3:]}\n{b.log()[-2000:]}"
    assert not failures, failures[:5]
    for name in before:
        d = grown(before[name], after[name])
        assert d["anon_kb"] <= RSS_GROWTH_KB, f"{name}: anonymous RSS grew {d['anon_kb']} kB over {CALLS} calls ({d['anon_kb'] / CALLS:.1f} kB a call)"
        assert d["threads"] == 0, f"{name}: threads {before[name]['threads']} → {after[name]['threads']}"
