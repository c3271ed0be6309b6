/// The device's page at `GET /`: a person allows camera and microphone, presses Call, and
/// talks to the device. Plain HTML and JavaScript, no build step. Also usable from another
/// origin: `?device=http://host:port` points it at a device (CORS is allowed).
enum DevicePage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>videophone</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { padding: 12px 16px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
  h1 { font-size: 18px; margin: 0 12px 0 0; }
  button { font-size: 18px; padding: 10px 22px; border: 0; border-radius: 6px; cursor: pointer; }
  #call { background: #2a8f3a; color: white; }
  #hangup { background: #b3261e; color: white; }
  button:disabled { opacity: .4; cursor: default; }
  input { font-size: 15px; padding: 8px; border-radius: 4px; border: 1px solid #555; background: #222; color: #eee; }
  #status { font-size: 15px; }
  #error { color: #ff8a80; font-size: 15px; padding: 0 16px; min-height: 1.2em; }
  main { display: grid; grid-template-columns: 1fr 240px; gap: 12px; padding: 12px 16px; }
  video { width: 100%; background: #000; border-radius: 6px; }
</style>
</head>
<body>
<header>
  <h1 id="title">videophone</h1>
  <label>Token <input id="token" type="password" size="16" autocomplete="off"></label>
  <button id="call">Call</button>
  <button id="hangup" disabled>Hang up</button>
  <span id="status">idle</span>
</header>
<div id="error" role="alert"></div>
<main>
  <video id="remote" autoplay playsinline></video>
  <video id="local" autoplay playsinline muted></video>
</main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const device = (params.get("device") || "").replace(/\/$/, "");
const trickle = params.get("trickle") === "1";
const videoCodec = (params.get("codec") || "h264").toLowerCase();  // which codec to offer (for trying other devices)
const $ = (id) => document.getElementById(id);
const vp = window.vp = { pc: null, resource: null, t0: 0, firstFrameMs: null, connectedMs: null, ended: null, error: null };
$("token").value = params.get("token") || localStorage.getItem("videophone-token") || "";

function status(text) { $("status").textContent = text; }
function fail(text) { vp.error = text; $("error").textContent = text; status("error"); }
function headers(type) {
  const h = { "Authorization": "Bearer " + $("token").value };
  if (type) h["Content-Type"] = type;
  return h;
}
function withTimeout(promise, ms, what) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(what + " timed out")), ms))]);
}

async function call() {
  $("error").textContent = ""; vp.error = null; vp.ended = null; vp.firstFrameMs = null; vp.connectedMs = null;
  localStorage.setItem("videophone-token", $("token").value);
  $("call").disabled = true;
  try {
    status("starting camera");
    const stream = params.get("source") === "synthetic" ? syntheticStream()
      : await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    $("local").srcObject = stream;
    vp.t0 = performance.now();
    const pc = vp.pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) {
      const t = pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
      if (track.kind === "video" && RTCRtpReceiver.getCapabilities && t.setCodecPreferences) {
        const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
        const wanted = codecs.filter(c => c.mimeType.toLowerCase() === "video/" + videoCodec &&
                                          (videoCodec !== "h264" || /packetization-mode=1/.test(c.sdpFmtpLine || "")));
        if (wanted.length) t.setCodecPreferences(wanted.concat(codecs.filter(c => /rtx/i.test(c.mimeType))));
      }
    }
    pc.ontrack = (e) => { if (e.track.kind === "video") $("remote").srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      status(pc.connectionState);
      if (pc.connectionState === "connected" && vp.connectedMs === null) vp.connectedMs = performance.now() - vp.t0;
      if (pc.connectionState === "failed") end("connection failed");
    };
    const pending = [];
    let patchReady = null;
    pc.onicecandidate = (e) => {
      if (!trickle || !e.candidate || !e.candidate.candidate) return;
      pending.push("a=" + e.candidate.candidate);
      if (patchReady) sendCandidates(pending.splice(0));
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (!trickle) {
      status("gathering");
      await withTimeout(new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
      }), 3000, "ICE gathering").catch(() => {});
    }
    status("ringing");
    const res = await withTimeout(fetch(device + "/call", { method: "POST", headers: headers("application/sdp"), body: pc.localDescription.sdp }), 10000, "the device");
    const body = await res.text();
    if (res.status !== 201) throw new Error("the device refused the call (" + res.status + "): " + body.trim());
    vp.resource = new URL(res.headers.get("Location"), (device || location.origin) + "/").href;
    vp.answer = body;
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    patchReady = true;
    if (trickle && pending.length) sendCandidates(pending.splice(0));
    $("hangup").disabled = false;
    watch();
  } catch (e) {
    fail(e && e.message ? e.message : String(e));
    cleanup();
  }
}

async function sendCandidates(lines) {
  try {
    const res = await fetch(vp.resource, { method: "PATCH", headers: headers("application/trickle-ice-sdpfrag"), body: lines.join("\r\n") + "\r\n" });
    const text = res.status === 200 ? await res.text() : "";
    for (const line of text.split(/\r?\n/)) {
      if (line.startsWith("a=candidate:")) await vp.pc.addIceCandidate({ candidate: line.slice(2), sdpMid: "0" });
    }
  } catch (e) { /* the next candidate or the offer's own may still work */ }
}

// Frames decoded, the far end's state: the page notices a hang-up from the device.
async function watch() {
  const pc = vp.pc;
  let lastStatus = performance.now();
  while (vp.pc === pc && !vp.ended) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0 && vp.firstFrameMs === null) {
        vp.firstFrameMs = performance.now() - vp.t0;
      }
    });
    if (pc.connectionState === "closed" || pc.connectionState === "failed") { end("the call ended"); break; }
    if (performance.now() - lastStatus > 500) {
      lastStatus = performance.now();
      try {
        const r = await fetch(device + "/status");
        const s = await r.json();
        if (vp.connectedMs !== null && s.state === "idle") { end("the device hung up"); break; }
      } catch (e) {}
    }
    await new Promise((r) => setTimeout(r, vp.firstFrameMs === null ? 10 : 500));
  }
}

// A moving picture and a tone, for trying the device without a camera or microphone
// (and without granting the page access to them).
function syntheticStream() {
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 360;
  const g = canvas.getContext("2d");
  let n = 0;
  setInterval(() => {
    n++;
    g.fillStyle = "hsl(" + (n % 360) + ", 60%, 40%)"; g.fillRect(0, 0, 640, 360);
    g.fillStyle = "white"; g.fillRect((n * 6) % 600, 150, 40, 40);
    g.font = "32px sans-serif"; g.fillText("frame " + n, 20, 50);
  }, 33);
  const audio = new AudioContext();
  const osc = audio.createOscillator();
  const dest = audio.createMediaStreamDestination();
  osc.connect(dest); osc.start();
  return new MediaStream([...canvas.captureStream(30).getVideoTracks(), ...dest.stream.getAudioTracks()]);
}

function cleanup() {
  if (vp.pc) { vp.pc.close(); }
  const local = $("local").srcObject;
  if (local) local.getTracks().forEach((t) => t.stop());
  $("call").disabled = false;
  $("hangup").disabled = true;
}

function end(reason) {
  vp.ended = reason;
  status(reason);
  cleanup();
}

async function hangup() {
  const resource = vp.resource;
  end("you hung up");
  if (resource) { try { await fetch(resource, { method: "DELETE", headers: headers() }); } catch (e) {} }
}

// Numbers the tests and benchmarks read.
window.vpStats = async function () {
  const out = { connectionState: vp.pc ? vp.pc.connectionState : "new", firstFrameMs: vp.firstFrameMs, connectedMs: vp.connectedMs,
                ended: vp.ended, error: vp.error, framesDecoded: 0, audioPacketsReceived: 0, framesSent: 0, audioPacketsSent: 0 };
  if (!vp.pc) return out;
  const stats = await vp.pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out.framesDecoded = s.framesDecoded || 0;
    if (s.type === "inbound-rtp" && s.kind === "audio") out.audioPacketsReceived = s.packetsReceived || 0;
    if (s.type === "outbound-rtp" && s.kind === "video") out.framesSent = s.framesSent || 0;
    if (s.type === "outbound-rtp" && s.kind === "audio") out.audioPacketsSent = s.packetsSent || 0;
  });
  return out;
};

$("call").onclick = call;
$("hangup").onclick = hangup;
fetch(device + "/status").then((r) => r.json()).then((s) => { $("title").textContent = "videophone: " + s.device; }).catch(() => {});
</script>
</body>
</html>
"""#
}
