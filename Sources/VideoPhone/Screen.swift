import Codecs
import Display
import Logging
import MediaDevicesLinux
import NetworkCore

/// The device's screen: what call control's phase says to show (idle, calling, ringing,
/// in call, faults), the far end's video when a call's decoder hands a picture over, the
/// local camera as an inset, "video paused" when the stream stops, and blanking.
///
/// Pictures are presented by the call's decode thread (at their lip-sync time); text
/// screens by the `display` thread, which re-checks the state every 250 ms (blanking, the
/// pause). One lock orders both: a frame is composed and flipped by one thread at a time.
public final class ScreenService: @unchecked Sendable {
    public let display: any Display
    let logger: Logger
    private let lock = Lock()
    private var state: ScreenState
    private var renderer = ScreenRenderer()
    private var framebuffer: Framebuffer
    private var remote: I420Picture?
    /// The far end's last picture, kept in storage reused frame to frame.
    private var remoteStore = I420Picture()
    private var local: I420Picture?
    /// The camera thread's latest inset, under its own lock: the camera never waits for a flip.
    private let localInbox = Locked<(picture: I420Picture, fresh: Bool)>((I420Picture(), false))
    private var faults: [ScreenFault] = []
    private var shownContent: ScreenContent?
    private var needsRedraw = true
    private let queue = SerialQueue(name: "display", capacity: 16)
    private var timer: UInt64?
    private var stopped = false
    /// Flips, and flips of far-end pictures, for status and tests.
    private(set) var flips: UInt64 = 0
    private(set) var videoFlips: UInt64 = 0
    /// The last far-end picture's capture (sender's NTP) to flip, ms (glass to glass).
    private var glassToGlass: [Double] = []

    public init(display: any Display, deviceName: String, blankAfterSeconds: Int, logger: Logger) {
        self.display = display
        self.logger = logger
        framebuffer = Framebuffer(width: display.width, height: display.height)
        state = ScreenState(deviceName: deviceName, blankAfter: blankAfterSeconds > 0 ? .seconds(Int64(blankAfterSeconds)) : nil, now: Instant.now())
        logger.info("display ready", metadata: ["display": "\(display.name)"])
        _ = queue.async { [weak self] in self?.refresh() }
        scheduleTick()
    }

    private func scheduleTick() {
        timer = queue.after(.milliseconds(250)) { [weak self] in
            guard let self else { return }
            refresh()
            if !lock.withLock({ stopped }) { scheduleTick() }
        }
    }

    public func stop() {
        lock.withLock { stopped = true }
        queue.cancel(timer)
        queue.stop()
        display.close()
    }

    /// Call control's phase.
    public func setPhase(_ phase: ScreenState.Phase) {
        let changed = lock.withLock { () -> Bool in
            guard phase != state.phase else { return false }
            state.setPhase(phase, now: Instant.now())
            if case .inCall = phase {} else { remote = nil; local = nil }
            needsRedraw = true
            return true
        }
        if changed { _ = queue.async { [weak self] in self?.refresh() } }
    }

    /// A button press: wakes a blanked screen.
    public func activity() {
        lock.withLock { state.activity(now: Instant.now()) }
        _ = queue.async { [weak self] in self?.refresh() }
    }

    public func setFaults(_ list: [ScreenFault]) {
        lock.withLock {
            if faults != list { faults = list; needsRedraw = true }
        }
    }

    /// The local camera's picture for the inset (already small; tightly packed I420).
    func setLocal(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int) {
        localInbox.withLock { $0.picture.copy(from: bytes, width: width, height: height); $0.fresh = true }
    }

    /// Takes a new inset picture, if one came (call with `lock` held).
    private func takeLocal() {
        guard case .inCall = state.phase else { return }
        localInbox.withLock { inbox in
            guard inbox.fresh else { return }
            inbox.fresh = false
            if local == nil { local = I420Picture() }
            local!.copy(from: inbox.picture)
        }
    }

    /// Shows a decoded far-end picture now (the decode thread calls this at the frame's due
    /// time). Returns the flip's time.
    @discardableResult
    func present(remote picture: I420Picture, captureNTP: UInt64?) -> Instant? {
        lock.withLock { () -> Instant? in
            guard !stopped, case .inCall = state.phase else { return nil }
            remoteStore.copy(from: picture)
            remote = nil
            remote = remoteStore
            takeLocal()
            state.videoShown(now: Instant.now())
            let content = state.content(now: Instant.now())
            renderer.render(content, faults: faults, remote: remote, local: local, into: &framebuffer)
            shownContent = content
            let flip = display.present(framebuffer)
            if flip != nil {
                flips += 1
                videoFlips += 1
                if let ntp = captureNTP {
                    let ms = Double(wallClockNanoseconds() - NTPTime.toUnixNanoseconds(ntp)) / 1e6
                    if glassToGlass.count >= 4096 { glassToGlass.removeFirst(1024) }
                    glassToGlass.append(ms)
                }
            }
            return flip
        }
    }

    /// Redraws a text screen when what to show changed (display thread).
    private func refresh() {
        lock.withLock {
            guard !stopped else { return }
            let now = Instant.now()
            let content = state.content(now: now)
            // While video flows the decode thread draws; only a change of screen matters here.
            if case .inCall = content, state.lastVideo != nil, !needsRedraw { return }
            guard needsRedraw || content != shownContent else { return }
            if case .inCall = content, state.lastVideo != nil {} else { remote = nil }
            takeLocal()
            renderer.render(content, faults: faults, remote: remote, local: local, into: &framebuffer)
            if content != shownContent { logger.debug("screen", metadata: ["shows": "\(content.name)"]) }
            shownContent = content
            needsRedraw = false
            if display.present(framebuffer) != nil { flips += 1 }
        }
    }

    /// What is on the screen now, as drawn (for `videophonectl screenshot`).
    public func snapshot() -> Framebuffer {
        if let off = display as? OffscreenDisplay { return off.current }
        return lock.withLock { framebuffer }
    }

    /// For status: what it shows, the text regions, flips, glass-to-glass samples.
    public struct Figures: Sendable {
        public var content: String
        public var regions: [TextRegion]
        public var flips: UInt64
        public var videoFlips: UInt64
        public var glassToGlassMs: [Double]
        public var display: String
    }

    public var figures: Figures {
        lock.withLock {
            Figures(content: shownContent?.name ?? "none", regions: renderer.regions, flips: flips, videoFlips: videoFlips,
                    glassToGlassMs: glassToGlass, display: display.name)
        }
    }
}

extension ScreenService {
    /// The decoder `[video] decoder` asks for: the board's V4L2 mem2mem H.264 decoder
    /// (`v4l2`, or `auto` when one is found), else libavcodec. `auto` falls back to
    /// libavcodec when the hardware one does not open.
    static func makeDecoder(_ c: DeviceConfig, logger: Logger) throws -> any VideoDecoder {
        if c.videoDecoder == "libavcodec" { return try AVCodecH264Decoder() }
        let path = c.videoDecoderDevice ?? V4L2M2MDecoder.find()?.path
        if let path {
            do { return try V4L2M2MDecoder(path: path) } catch {
                if c.videoDecoder == "v4l2" { throw error }
                logger.warning("hardware video decoder unavailable; decoding in software", metadata: ["REASON": "\(error)"])
            }
        } else if c.videoDecoder == "v4l2" {
            throw CodecError("video.decoder = \"v4l2\" and no V4L2 H.264 decoder found")
        }
        return try AVCodecH264Decoder()
    }

    /// The screen `[display]` asks for: nil for `none`, or when the DRM device cannot be
    /// used (logged; the device runs on without a screen, as one without a display does).
    static func make(_ c: DeviceConfig, logger: Logger) -> ScreenService? {
        let display: any Display
        switch c.displayOutput {
        case "simulated":
            display = OffscreenDisplay(width: c.displayMode?.width ?? 1280, height: c.displayMode?.height ?? 720, refreshHz: c.displayMode?.refreshHz ?? 60)
        case "drm":
            do {
                display = try DRMDisplay(device: c.displayDevice, connector: c.displayConnector,
                                         width: c.displayMode?.width, height: c.displayMode?.height, refreshHz: c.displayMode?.refreshHz)
            } catch {
                logger.error("display unavailable: running without a screen", metadata: ["REASON": "\(error)"])
                return nil
            }
        default:
            return nil
        }
        return ScreenService(display: display, deviceName: c.name, blankAfterSeconds: c.displayBlankAfterSeconds, logger: logger)
    }
}
