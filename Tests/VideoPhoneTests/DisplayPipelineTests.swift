import Codecs
import Display
import Logging
import MediaDevices
import NetworkCore
import RTP
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import VideoPhone

@Suite struct DisplayConfigTests {
    @Test func displayTableIsReadAndPrinted() throws {
        let c = try DeviceConfig.parse("""
            [display]
            output = "drm"
            device = "/dev/dri/card1"
            connector = "HDMI-A-2"
            mode = "1920x1080@50"
            blank_after_s = 0
            """, file: "cfg.toml")
        #expect(c.displayOutput == "drm")
        #expect(c.displayDevice == "/dev/dri/card1")
        #expect(c.displayConnector == "HDMI-A-2")
        #expect(c.displayMode == DisplayMode(width: 1920, height: 1080, refreshHz: 50))
        #expect(c.displayBlankAfterSeconds == 0)
        let printed = c.effectiveTOML(showSecrets: false)
        #expect(printed.contains("[display]\noutput = \"drm\"\ndevice = \"/dev/dri/card1\"\nconnector = \"HDMI-A-2\"\nmode = \"1920x1080@50\"\nblank_after_s = 0\n"))
        // The default: no screen, nothing decoded.
        #expect(try DeviceConfig.parse("", file: "cfg.toml").displayOutput == "none")
    }

    @Test(arguments: [
        ("[display]\noutput = \"hdmi\"\n", "cfg.toml:2: display.output: 'hdmi' is not one of none, simulated, drm"),
        ("[display]\nmode = \"1280*720\"\n", "cfg.toml:2: display.mode: expected \"WIDTHxHEIGHT\" or \"WIDTHxHEIGHT@HZ\""),
        ("[display]\nmode = \"1280x720@0\"\n", "cfg.toml:2: display.mode: expected"),
        ("[display]\nmode = \"99999x720\"\n", "cfg.toml:2: display.mode: expected"),
        ("[display]\n\nconnector = \"HDMI A\"\n", "cfg.toml:3: display.connector: expected a connector name like \"HDMI-A-1\""),
        ("[display]\ndevice = \"card0\"\n", "cfg.toml:2: display.device: expected a device path"),
        ("[display]\nblank_after_s = -1\n", "cfg.toml:2: display.blank_after_s: -1 is out of range 0...86400"),
        ("[display]\nblank_after_s = \"5m\"\n", "cfg.toml:2: display.blank_after_s: expected an integer, got string"),
        ("[display]\nrotation = 90\n", "cfg.toml:2: display.rotation: unknown key"),
        ("[video]\ndecoder = \"ffmpeg\"\n", "cfg.toml:2: video.decoder: 'ffmpeg' is not one of auto, libavcodec, v4l2"),
    ])
    func mistakesNameTheirLineAndKey(text: String, expected: String) {
        #expect { try DeviceConfig.parse(text, file: "cfg.toml") } throws: { e in
            let d = "\(e)"
            if !d.contains(expected) { Issue.record("got '\(d)', expected '\(expected)'") }
            return true
        }
    }
}

@Suite struct DisplayPipelineTests {
    let logger = Logger(label: "test")

    func frames(_ n: Int, width: Int = 320, height: Int = 180) throws -> [EncodedVideoFrame] {
        let cam = TestPatternCamera(width: width, height: height)
        let enc = try X264Encoder(settings: H264EncoderSettings(width: width, height: height, fps: 30, bitrateKbps: 500))
        var out: [EncodedVideoFrame] = []
        var i = 0
        while out.count < n {
            if let f = enc.encode(i420: UnsafeRawBufferPointer(cam.draw()), forceKeyframe: i == 0) { out.append(f) }
            i += 1
        }
        return out
    }

    func waitUntil(_ seconds: Double, _ cond: () -> Bool) -> Bool {
        let end = Instant.now() + .nanoseconds(Int64(seconds * 1e9))
        while Instant.now() < end {
            if cond() { return true }
            usleep(5_000)
        }
        return cond()
    }

    @Test func screenFollowsThePhases() {
        let display = OffscreenDisplay(width: 320, height: 180, pacedToVblank: false)
        let screen = ScreenService(display: display, deviceName: "hall", blankAfterSeconds: 0, logger: logger)
        defer { screen.stop() }
        #expect(waitUntil(2) { screen.figures.content == "idle" })
        #expect(screen.figures.regions.map(\.text) == ["hall", "ready"])
        screen.setPhase(.ringing("ann"))
        #expect(waitUntil(2) { screen.figures.content == "ringing" })
        #expect(screen.figures.regions.map(\.text) == ["ann", "is calling"])
        #expect(display.current[2, 2] == Colour.ringing)
        screen.setFaults([.noNetwork])
        screen.setPhase(.idle)
        #expect(waitUntil(2) { screen.figures.content == "idle" && display.current[2, 2] == Colour.fault })
    }

    /// Stopped from another thread after its 250 ms ticks have run with nothing else touching
    /// the display queue (a daemon stopping while idle): nothing is drawn after `stop()`.
    /// Under `make test-tsan` this is the case where the tick's re-arm raced `stop()` (CI).
    @Test func stopAfterIdleTicksEndsTheDisplayThread() {
        let display = OffscreenDisplay(width: 64, height: 36, pacedToVblank: false)
        let screen = ScreenService(display: display, deviceName: "hall", blankAfterSeconds: 0, logger: logger)
        #expect(waitUntil(2) { screen.figures.content == "idle" })
        usleep(800_000)  // three ticks or so, each re-arming the next
        screen.stop()
        let flips = screen.figures.flips
        screen.setPhase(.ringing("ann"))
        usleep(300_000)
        #expect(screen.figures.flips == flips)
    }

    /// x264 frames through the decode thread onto the screen; then damaged frames ask for a
    /// keyframe, at most every 500 ms, and the picture stays the last good one.
    @Test func decodesOntoTheScreenAndAsksForKeyframesWhenDamaged() throws {
        let display = OffscreenDisplay(width: 320, height: 180, pacedToVblank: false)
        let screen = ScreenService(display: display, deviceName: "hall", blankAfterSeconds: 0, logger: logger)
        defer { screen.stop() }
        screen.setPhase(.inCall("ann"))
        let requests = Locked(0)
        let playout = VideoPlayout(decoder: try AVCodecH264Decoder(), screen: screen, logger: logger) { requests.withLock { $0 += 1 } }
        playout.start()
        defer { playout.stop() }
        let encoded = try frames(10)
        let t0 = Instant.now()
        for (i, f) in encoded.enumerated() {
            let frame = AssembledFrame(rtpTimestamp: UInt32(i * 3000), data: f.data, isKeyframe: f.isKeyframe, packetCount: 1, captureNTP: nil)
            playout.insert(frame, arrival: t0 + .milliseconds(Int64(i * 33)))
            usleep(33_000)
        }
        #expect(waitUntil(3) { playout.current.decoded == 10 })
        #expect(waitUntil(2) { screen.figures.videoFlips >= 5 })
        #expect(requests.current == 0)
        let good = display.current
        // Not the idle or ringing colours: the test pattern's bars (grey levels differ across).
        #expect(good[2, 2] != Colour.background)
        let lumas = stride(from: 0, to: 320, by: 20).map { Int(Colour.green(good[$0, 20])) }
        #expect(lumas.max()! - lumas.min()! > 100)

        // Damaged frames: P-frames with their middle overwritten, and noise.
        var damaged = try frames(4)[1...].map(\.data)
        for i in damaged.indices { for k in stride(from: 30, to: damaged[i].count, by: 3) { damaged[i][k] = 0xFF } }
        damaged.append([0, 0, 0, 1, 0x65] + [UInt8](repeating: 0xA5, count: 300))
        for (i, d) in damaged.enumerated() {
            playout.insert(AssembledFrame(rtpTimestamp: UInt32(40_000 + i * 3000), data: d, isKeyframe: false, packetCount: 1, captureNTP: nil), arrival: Instant.now())
        }
        #expect(waitUntil(3) { playout.current.keyframeRequests >= 1 })
        usleep(100_000)
        // Rate-limited: a burst of bad frames is one request.
        #expect(requests.current == 1)
        #expect(playout.current.decodeErrors + playout.current.concealed >= 1)
    }

    @Test func overflowDropsTheBacklogAndWaitsForAKeyframe() throws {
        let display = OffscreenDisplay(width: 64, height: 36, pacedToVblank: false)
        let screen = ScreenService(display: display, deviceName: "x", blankAfterSeconds: 0, logger: logger)
        defer { screen.stop() }
        let requests = Locked(0)
        // Not started: nothing drains the queue.
        let playout = VideoPlayout(decoder: try AVCodecH264Decoder(), screen: screen, logger: logger) { requests.withLock { $0 += 1 } }
        let p = AssembledFrame(rtpTimestamp: 0, data: [0, 0, 0, 1, 0x41, 0x9A], isKeyframe: false, packetCount: 1, captureNTP: nil)
        for _ in 0...VideoPlayout.capacity { playout.insert(p, arrival: Instant.now()) }
        #expect(playout.current.dropped == UInt64(VideoPlayout.capacity))
        #expect(requests.current == 1)
    }
}
