"""Debian's Chromium calls the device: through the device's own page, through a WHIP
POST from a page of another origin, with trickled and with mDNS candidates."""
import http.server as httpserver
import threading
import time

import pytest

from conftest import PEER_IP, TOKEN, http, wait_until

FEATURES_MDNS = "--enable-features=WebRtcHideLocalIpsWithMdns"


def vp_stats(driver):
    return driver.execute_script("return await window.vpStats()")


def start_call(driver, url):
    driver.get(url)
    driver.find_element("id", "call").click()
    s = wait_until(lambda: (lambda s: s if s["firstFrameMs"] is not None or s["error"] else None)(vp_stats(driver)), 15)
    assert s is not None, "no frame decoded in the browser within 15 s"
    assert s["error"] is None, s["error"]
    return s


def assert_media_both_ways(driver, device, seconds=10):
    time.sleep(seconds)
    b = vp_stats(driver)
    st = device.status()
    assert b["connectionState"] == "connected"
    assert st["state"] == "in-call"
    sent_by_device = device.stat("outbound-rtp", "video", "framesEncoded")
    audio_by_device = device.stat("outbound-rtp", "audio", "packetsSent")
    received_by_device = device.stat("inbound-rtp", "video", "framesReceived")
    audio_decoded = device.stat("inbound-rtp", "audio", "packetsDecoded")
    assert sent_by_device > 20 * seconds * 0.9
    assert b["framesDecoded"] >= 0.9 * sent_by_device - 3, (b, sent_by_device)
    assert b["audioPacketsReceived"] >= 0.9 * audio_by_device - 3, (b, audio_by_device)
    assert b["framesSent"] > 10 * seconds * 0.9
    assert received_by_device >= 0.9 * b["framesSent"] - 3, (b, received_by_device)
    assert audio_decoded >= 0.9 * b["audioPacketsSent"] - 3, (b, audio_decoded)
    return b, st


def test_page_call_h264_opus_both_ways_and_browser_hangup(make_device, browser_factory):
    device = make_device()
    driver = browser_factory(insecure_origins=[device.url])
    start_call(driver, f"{device.url}/?token={TOKEN}")
    _, st = assert_media_both_ways(driver, device)
    # Chromium lists 42001f first; the answer takes it and the stream says so.
    assert "profile-level-id=42001f" in st["call"]["videoCodec"]
    driver.find_element("id", "hangup").click()
    assert wait_until(lambda: device.status()["state"] == "idle", 1.0), "device still in the call 1 s after the browser hung up"


def test_whip_post_from_another_origin_and_device_hangup(make_device, browser_factory):
    device = make_device()
    page = http("GET", device.url + "/")[2]

    class Handler(httpserver.BaseHTTPRequestHandler):
        def do_GET(self):
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        driver = browser_factory()
        # http://127.0.0.1 is a secure context; the device is another origin: CORS.
        start_call(driver, f"http://127.0.0.1:{server.server_address[1]}/?token={TOKEN}&device={device.url}")
        assert_media_both_ways(driver, device)
        assert device.ctl("hangup").returncode == 0
        assert wait_until(lambda: vp_stats(driver)["ended"], 1.5), "the page did not notice the device hanging up"
    finally:
        server.shutdown()


def test_trickled_candidates_both_ways(make_device, browser_factory):
    device = make_device(extra="trickle = true")
    driver = browser_factory(insecure_origins=[device.url])
    start_call(driver, f"{device.url}/?token={TOKEN}&trickle=1")
    assert_media_both_ways(driver, device, seconds=5)
    # The device held its candidates back from the answer and sent them in the PATCH reply.
    count = "return %s.split('\\n').filter(l => l.startsWith('a=candidate')).length"
    assert driver.execute_script(count % "vp.answer") == 0
    assert driver.execute_script(count % "vp.pc.remoteDescription.sdp") >= 1


def test_browser_mdns_candidates_are_resolved(make_device, browser_factory):
    device = make_device()
    # Without camera permission Chromium hides its addresses behind .local names.
    driver = browser_factory(extra_args=[FEATURES_MDNS], insecure_origins=[device.url], fake_media=False)
    start_call(driver, f"{device.url}/?token={TOKEN}&source=synthetic")
    offer = driver.execute_script("return vp.pc.localDescription.sdp")
    assert ".local" in offer, "Chromium did not hide its addresses behind mDNS names"
    st = device.status()
    assert st["call"]["mdnsResolved"] >= 1
    pair = next(s for s in st["call"]["stats"] if s["type"] == "candidate-pair")
    assert pair["remoteCandidateType"] == "host"
    assert_media_both_ways(driver, device, seconds=5)


def test_device_offers_mdns_names_that_chromium_resolves(make_device, browser_factory):
    device = make_device(extra="mdns = true")
    driver = browser_factory(insecure_origins=[device.url])
    start_call(driver, f"{device.url}/?token={TOKEN}")
    answer = driver.execute_script("return vp.pc.remoteDescription.sdp")
    assert ".local" in answer and "10.77.0.1" not in answer
    assert device.status()["mdns"]["queriesAnswered"] >= 1
    assert_media_both_ways(driver, device, seconds=5)


def test_vp8_only_offer_is_refused_and_the_page_says_why(make_device, browser_factory):
    device = make_device()
    driver = browser_factory(insecure_origins=[device.url])
    driver.get(f"{device.url}/?token={TOKEN}&codec=vp8")
    # Offer audio too? No: a VP8-only video offer still carries Opus; strip audio to get "no usable codec".
    driver.execute_script("""
      const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = (c) => orig({video: c.video, audio: false});
    """)
    driver.find_element("id", "call").click()
    err = wait_until(lambda: vp_stats(driver)["error"], 10)
    assert err and "no usable codec" in err and "VP8" in err, err
    assert driver.find_element("id", "error").text == err
    assert device.status()["state"] == "idle"


def test_offer_without_fingerprint_is_refused(make_device, browser_factory):
    device = make_device()
    driver = browser_factory(insecure_origins=[device.url])
    driver.get(f"{device.url}/?token={TOKEN}")
    sdp = driver.execute_script("""
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video'); pc.addTransceiver('audio');
      const o = await pc.createOffer(); pc.close(); return o.sdp;""")
    stripped = "\r\n".join(l for l in sdp.split("\r\n") if not l.startswith("a=fingerprint"))
    status, _, body = http("POST", device.url + "/call", stripped.encode(),
                           {"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "fingerprint" in body
    assert device.status()["state"] == "idle"
