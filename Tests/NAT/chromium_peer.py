"""A Chromium WebRTC peer for the impairment bed, run inside a host namespace:

    ip netns exec HOST python3 chromium_peer.py STUN_HOST:PORT [CAMERA.y4m]

Headless Chromium (Selenium) opens a page served on this namespace's loopback (a secure
context, so the fake camera and microphone are granted), sends a 1280x720 30 fps fake
camera capped at 2 Mbit/s, and shows what it receives in a <video>. Commands are JSON
lines on stdin, each answered by one JSON line on stdout:

    {"op": "offer"}                      -> {"sdp": ...}    (ICE gathered, no trickle)
    {"op": "answer", "sdp": OFFER}       -> {"sdp": ...}
    {"op": "accept", "sdp": ANSWER}      -> {}
    {"op": "whip", "url": U, "token": T} -> {}             (calls the device at U)
    {"op": "hangup"}                     -> {}             (DELETE of that call)
    {"op": "stats"}                      -> {"inbound": {...}, "outbound": {...}, "pair": {...}}
"""
import http.server
import json
import shutil
import sys
import threading
import urllib.request

PAGE = """<!doctype html><meta charset=utf-8><title>anchor</title>
<video id=remote autoplay muted playsinline></video>
<script>
const stun = "%STUN%";
window.pc = new RTCPeerConnection({iceServers: [{urls: "stun:" + stun}]});
pc.ontrack = e => { document.getElementById("remote").srcObject = e.streams[0]; };
window.ready = (async () => {
  const s = await navigator.mediaDevices.getUserMedia({
    video: {width: 1280, height: 720, frameRate: 30}, audio: true});
  for (const t of s.getTracks()) pc.addTrack(t, s);
})();
async function capped() {
  for (const sender of pc.getSenders()) {
    if (!sender.track || sender.track.kind !== "video") continue;
    const p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) continue;
    p.encodings[0].maxBitrate = 2000000;
    await sender.setParameters(p);
  }
}
function gathered() {
  return new Promise(r => {
    if (pc.iceGatheringState === "complete") return r();
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") r(); });
  });
}
window.makeOffer = async () => {
  await ready; await pc.setLocalDescription(await pc.createOffer()); await gathered();
  return pc.localDescription.sdp;
};
window.makeAnswer = async (sdp) => {
  await ready; await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription(await pc.createAnswer()); await gathered(); await capped();
  return pc.localDescription.sdp;
};
window.accept = async (sdp) => { await pc.setRemoteDescription({type: "answer", sdp}); await capped(); };
window.figures = async () => {
  const out = {inbound: {}, outbound: {}, pair: {}};
  (await pc.getStats()).forEach(r => {
    if (r.type === "inbound-rtp" && r.kind === "video") out.inbound = r;
    if (r.type === "outbound-rtp" && r.kind === "video") out.outbound = r;
    if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") out.pair = r;
  });
  return JSON.parse(JSON.stringify(out));
};
</script>"""


def serve(stun):
    page = PAGE.replace("%STUN%", stun).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="anchor-page", daemon=True).start()
    return server.server_address[1]


def main():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    port = serve(sys.argv[1])
    # The camera: a Y4M file (the device's own test pattern), or Chromium's built-in one.
    camera = [f"--use-file-for-fake-video-capture={sys.argv[2]}"] if len(sys.argv) > 2 else []
    o = Options()
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--autoplay-policy=no-user-gesture-required",
              "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              # Its real addresses, not mDNS names: the other Chromium cannot resolve those.
              "--disable-features=WebRtcHideLocalIpsWithMdns", *camera):
        o.add_argument(a)
    driver = webdriver.Chrome(options=o, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    driver.set_script_timeout(30)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        print(json.dumps({"ready": True}), flush=True)
        call = None
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["op"]
            run = lambda js, *args: driver.execute_async_script(  # noqa: E731
                js + "(...Array.from(arguments).slice(0, -1)).then(arguments[arguments.length - 1], "
                "e => arguments[arguments.length - 1]({error: String(e)}))", *args)
            if op == "offer":
                out = {"sdp": run("makeOffer")}
            elif op == "answer":
                out = {"sdp": run("makeAnswer", cmd["sdp"])}
            elif op == "accept":
                out = run("accept", cmd["sdp"]) or {}
            elif op == "whip":
                # Calls a device: the offer goes to its POST /call (WHIP style, from inside
                # this namespace), the answer comes back; the call's resource is kept for
                # the hang-up.
                offer = run("makeOffer")
                req = urllib.request.Request(cmd["url"] + "/call", data=offer.encode(), method="POST",
                                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {cmd['token']}"})
                with urllib.request.urlopen(req, timeout=15) as r:
                    answer, location = r.read().decode(), r.headers.get("Location")
                call = (cmd["url"] + location if location and location.startswith("/") else location, cmd["token"])
                out = run("accept", answer) or {}
            elif op == "hangup":
                if call:
                    req = urllib.request.Request(call[0], method="DELETE", headers={"Authorization": f"Bearer {call[1]}"})
                    try:
                        urllib.request.urlopen(req, timeout=5).read()
                    except Exception as e:  # noqa: BLE001  (the device may have ended it)
                        print(f"hangup: {e}", file=sys.stderr)
                out = {}
            elif op == "stats":
                out = run("figures")
            else:
                out = {"error": f"unknown op {op}"}
            print(json.dumps(out), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
