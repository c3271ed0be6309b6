"""aiortc, an independent WebRTC stack, and the device call each other both ways."""
import re
import time

import pytest

from conftest import PEER_IP, TOKEN, http, wait_until

aiortc_peer = pytest.importorskip("aiortc_peer")


@pytest.fixture
def loop():
    l = aiortc_peer.Loop()
    yield l
    l.stop()


def profile(sdp):
    m = re.search(r"profile-level-id=([0-9a-fA-F]{6})", sdp)
    return m.group(1).lower() if m else None


def test_aiortc_calls_the_device(make_device, loop):
    device = make_device()
    pc, counters, video, resource, offer, answer = loop.run(aiortc_peer.offer_to(device.url, TOKEN))
    assert wait_until(lambda: counters.connected and counters.video_decoded > 0, 15), device.log()
    # The answer takes the first H.264 profile the offer lists (this aiortc lists 42001f,
    # then 42e01f).
    offered = re.findall(r"profile-level-id=([0-9a-f]{6})", offer)
    assert profile(answer) == offered[0]
    sent_before, decoded_before = video.sent, counters.video_decoded
    time.sleep(10)
    st = device.status()
    assert st["state"] == "in-call"
    assert device.stat("inbound-rtp", "video", "framesReceived") >= 0.9 * video.sent - 3, (video.sent, st)
    assert counters.video_decoded >= 0.9 * device.stat("outbound-rtp", "video", "framesEncoded") - 3
    assert counters.audio_decoded >= 0.9 * device.stat("outbound-rtp", "audio", "packetsSent") - 3
    assert device.stat("inbound-rtp", "audio", "packetsDecoded") > 400
    # Hang up from aiortc (DELETE on the resource): the device ends the call within 1 s.
    status, _, _ = http("DELETE", resource, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    loop.run(pc.close())
    assert wait_until(lambda: device.status()["state"] == "idle", 1.0)


def test_device_calls_aiortc(make_device, loop):
    answerer = aiortc_peer.Answerer(loop, PEER_IP, "aiortc-token")
    try:
        device = make_device(peers=[("aiortc", answerer.url, "aiortc-token")])
        r = device.ctl("call", "aiortc")
        assert r.returncode == 0, r.stderr
        pc, counters, video = next(iter(answerer.calls.values()))
        assert wait_until(lambda: counters.connected and counters.video_decoded > 0, 15), device.log()
        time.sleep(10)
        st = device.status()
        # The SPS says what was answered: the answer's profile is what the device reports.
        assert profile(st["call"]["videoCodec"]) == profile(pc.localDescription.sdp)
        assert counters.video_decoded >= 0.9 * device.stat("outbound-rtp", "video", "framesEncoded") - 3
        assert device.stat("inbound-rtp", "video", "framesReceived") >= 0.9 * video.sent - 3
        assert counters.audio_decoded >= 0.9 * device.stat("outbound-rtp", "audio", "packetsSent") - 3
        assert device.stat("inbound-rtp", "audio", "packetsDecoded") > 400
        # Hang up from the device: aiortc learns through DELETE.
        assert device.ctl("hangup").returncode == 0
        assert wait_until(lambda: counters.closed, 1.0)
    finally:
        answerer.stop()
