"""aiortc as the far end: an offerer that POSTs to the device, and a WHIP-style answerer
the device POSTs to. Both count what they send and what they decode."""
import asyncio
import fractions
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import VideoFrame


def local_only():
    """No ICE servers: aiortc would otherwise default to a public STUN server, and these
    tests never send traffic off this machine."""
    return RTCConfiguration(iceServers=[])


class CountingVideoTrack(VideoStreamTrack):
    """A moving test picture (640x360) that counts the frames it hands to the encoder."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        img = numpy.zeros((360, 640, 3), numpy.uint8)
        x = (self.sent * 8) % 600
        img[150:190, x:x + 40] = 255
        img[:, :, 1] = (self.sent * 3) % 255
        frame = VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class Counters:
    def __init__(self):
        self.video_decoded = 0
        self.audio_decoded = 0
        self.first_frame_at = None
        self.t0 = time.monotonic()
        self.connected = False
        self.closed = False


def prefer_h264(pc):
    for t in pc.getTransceivers():
        if t.kind == "video":
            caps = RTCRtpSender.getCapabilities("video").codecs
            t.setCodecPreferences([c for c in caps if c.mimeType.lower() == "video/h264"] +
                                  [c for c in caps if c.mimeType.lower() == "video/rtx"])


async def consume(track, counters):
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        if track.kind == "video":
            counters.video_decoded += 1
            if counters.first_frame_at is None:
                counters.first_frame_at = time.monotonic()
        else:
            counters.audio_decoded += 1


def wire(pc, counters, video_track=None):
    """Counts what arrives; adds our tracks when given (offerer: now; answerer: after
    the offer is set, so they land on the offered transceivers)."""
    if video_track is not None:
        add_tracks(pc, video_track)

    @pc.on("track")
    def on_track(track):
        asyncio.ensure_future(consume(track, counters))

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState == "connected":
            counters.connected = True
        if pc.connectionState in ("closed", "failed"):
            counters.closed = True


def add_tracks(pc, video_track):
    pc.addTrack(video_track)
    pc.addTrack(AudioStreamTrack())


class Loop:
    """An asyncio loop on its own thread, so pytest code stays synchronous."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


async def offer_to(url, token):
    """aiortc → device: POST our offer; returns (pc, counters, video track, resource URL)."""
    import urllib.request
    counters = Counters()
    pc = RTCPeerConnection(local_only())
    video = CountingVideoTrack()
    wire(pc, counters, video)
    prefer_h264(pc)
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers here: all candidates
    req = urllib.request.Request(url + "/call", data=pc.localDescription.sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    loop = asyncio.get_running_loop()
    resp = await loop.run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=10))
    answer = resp.read().decode()
    location = resp.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, counters, video, url + location, pc.localDescription.sdp, answer


class Answerer:
    """device → aiortc: a WHIP-style endpoint (POST /call, DELETE /call/ID) on `host`."""

    def __init__(self, loop, host, token):
        self.loop = loop
        self.token = token
        self.calls = {}
        self.offers = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                offer = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.offers.append(offer)
                call_id, answer = outer.loop.run(outer._answer(offer))
                body = answer.encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/sdp")
                self.send_header("Location", f"/call/{call_id}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_DELETE(self):
                call_id = self.path.rsplit("/", 1)[-1]
                if call_id in outer.calls:
                    outer.loop.run(outer.calls[call_id][0].close())
                    outer.calls[call_id][1].closed = True
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def _answer(self, offer):
        counters = Counters()
        pc = RTCPeerConnection(local_only())
        video = CountingVideoTrack()
        wire(pc, counters)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        add_tracks(pc, video)
        await pc.setLocalDescription(await pc.createAnswer())
        call_id = uuid.uuid4().hex
        self.calls[call_id] = (pc, counters, video)
        return call_id, pc.localDescription.sdp

    def stop(self):
        self.server.shutdown()
