"""Call set-up against real peers, each next to the same peer calling itself, in one run:
device↔Chromium vs Chromium↔Chromium, aiortc↔device vs aiortc↔aiortc. Time runs from the
browser's (or aiortc's) createOffer to its first decoded video frame from the far end."""
import asyncio
import http.server
import statistics
import sys
import threading
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import aiortc_peer  # noqa: E402
from conftest import TOKEN, Device, chrome, http as http_request, wait_until  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10

LOOPBACK_PAGE = """<!doctype html><script>
window.run = async function () {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
  const t0 = performance.now();
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  for (const t of stream.getTracks()) { a.addTrack(t, stream); b.addTrack(t.clone(), stream); }
  const gathered = (pc) => new Promise((r) => { if (pc.iceGatheringState === "complete") r();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") r(); }; });
  await a.setLocalDescription(await a.createOffer()); await gathered(a);
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer()); await gathered(b);
  await a.setRemoteDescription(b.localDescription);
  while (true) {
    let decoded = 0;
    (await a.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded || 0; });
    if (decoded > 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const ms = performance.now() - t0;
  a.close(); b.close(); stream.getTracks().forEach((t) => t.stop());
  return ms;
};
</script>"""


def spread(xs):
    if not xs:
        return "-"
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"{statistics.median(xs):7.1f} ms (p25–p75 {q[0]:.1f}–{q[2]:.1f}, min–max {xs[0]:.1f}–{xs[-1]:.1f}, n={len(xs)})"


def chromium(workdir):
    device = Device(workdir, "bench-device")
    page = LOOPBACK_PAGE.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = chrome(insecure_origins=[device.url])
    with_device, browser_pair = [], []
    try:
        for i in range(RUNS + 1):
            driver.get(f"{device.url}/?token={TOKEN}")
            driver.find_element("id", "call").click()
            ms = wait_until(lambda: driver.execute_script("return vp.firstFrameMs"), 15)
            driver.find_element("id", "hangup").click()
            wait_until(lambda: device.status()["state"] == "idle", 3)
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
            ms2 = driver.execute_script("return await window.run()")
            if i > 0:  # the first round warms both up
                if ms:
                    with_device.append(ms)
                browser_pair.append(ms2)
    finally:
        driver.quit()
        server.shutdown()
        device.stop()
    print(f"Chromium → device (first frame from the device decoded in Chromium)   {spread(with_device)}")
    print(f"Chromium → Chromium (same page, same machine, same run)                {spread(browser_pair)}")


async def aiortc_pair():
    from aiortc import RTCPeerConnection
    a, b = RTCPeerConnection(aiortc_peer.local_only()), RTCPeerConnection(aiortc_peer.local_only())
    ca, cb = aiortc_peer.Counters(), aiortc_peer.Counters()
    aiortc_peer.wire(a, ca, aiortc_peer.CountingVideoTrack())
    aiortc_peer.prefer_h264(a)
    aiortc_peer.wire(b, cb)
    t0 = time.monotonic()
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    aiortc_peer.add_tracks(b, aiortc_peer.CountingVideoTrack())
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    while ca.first_frame_at is None and time.monotonic() - t0 < 15:
        await asyncio.sleep(0.005)
    ms = (ca.first_frame_at - t0) * 1000 if ca.first_frame_at else None
    await a.close()
    await b.close()
    return ms


async def aiortc_to_device(url):
    t0 = time.monotonic()
    pc, counters, _, resource, _, _ = await aiortc_peer.offer_to(url, TOKEN)
    while counters.first_frame_at is None and time.monotonic() - t0 < 15:
        await asyncio.sleep(0.005)
    ms = (counters.first_frame_at - t0) * 1000 if counters.first_frame_at else None
    await pc.close()
    return ms, resource


def aiortc(workdir):
    device = Device(workdir, "bench-aiortc-device")
    loop = aiortc_peer.Loop()
    with_device, pair = [], []
    try:
        for i in range(RUNS + 1):
            ms, resource = loop.run(aiortc_to_device(device.url))
            http_request("DELETE", resource, headers={"Authorization": f"Bearer {TOKEN}"})
            wait_until(lambda: device.status()["state"] == "idle", 3)
            ms2 = loop.run(aiortc_pair())
            if i > 0:
                if ms:
                    with_device.append(ms)
                if ms2:
                    pair.append(ms2)
    finally:
        loop.stop()
        device.stop()
    print(f"aiortc → device (first frame from the device decoded by aiortc)        {spread(with_device)}")
    print(f"aiortc → aiortc (two peers in one process)                             {spread(pair)}")


if __name__ == "__main__":
    import tempfile
    work = tempfile.mkdtemp(prefix="videophone-bench-")
    print(f"\n## Call setup with real peers: createOffer → first decoded video frame ({RUNS} runs each, interleaved)")
    chromium(work)
    aiortc(work)
