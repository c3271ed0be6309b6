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
/// pause). Two locks: `state` (what to show, figures; held for microseconds, so call
/// control, the camera and status never wait for a flip) and `render` (the framebuffer and
/// the display: one frame composed and flipped at a time).
public final class ScreenService: @unchecked Sendable {
    public let display: any Display
    let logger: Logger

    /// What to show and what was shown: short critical sections only.
    private struct Inputs {
        var state: ScreenState
        var faults: [ScreenFault] = []
        var needsRedraw = true
        /// Set by a phase change: the render side drops its pictures.
        var dropPictures = false
        var stopped = false
        var shownContent: ScreenContent?
        var regions: [TextRegion] = []
        var flips: UInt64 = 0
        var videoFlips: UInt64 = 0
        /// The far-end picture's capture (sender's NTP) to its flip, ms (glass to glass).
        var glassToGlass: [Double] = []
    }
    private let inputs: Locked<Inputs>

    // The render side, under `render`.
    private let render = Lock()
    private var renderer = ScreenRenderer()
    private var framebuffer: Framebuffer
    /// The far end's last picture, kept in storage reused frame to frame.
    private var remoteStore = I420Picture()
    private var hasRemote = false
    private var local: I420Picture?
    /// The camera thread's latest inset, under its own lock: the camera never waits for a flip.
    private let localInbox = Locked<(picture: I420Picture, fresh: Bool)>((I420Picture(), false))
    private let queue = SerialQueue(name: "display", capacity: 16)

    public init(display: any Display, deviceName: String, blankAfterSeconds: Int, logger: Logger) {
        self.display = display
        self.logger = logger
        framebuffer = Framebuffer(width: display.width, height: display.height)
        inputs = Locked(Inputs(state: ScreenState(deviceName: deviceName, blankAfter: blankAfterSeconds > 0 ? .seconds(Int64(blankAfterSeconds)) : nil, now: Instant.now())))
        logger.info("display ready", metadata: ["display": "\(display.name)"])
        _ = queue.async { [weak self] in self?.refresh() }
        scheduleTick()
    }

    /// The tick re-arms itself on the display thread until `stopped`; `stop()` needs no
    /// timer id (keeping one, written by the tick and read by `stop()` on another thread,
    /// was a race): the queue's stop drops pending timers.
    private func scheduleTick() {
        _ = queue.after(.milliseconds(250)) { [weak self] in
            guard let self else { return }
            refresh()
            if !inputs.withLock({ $0.stopped }) { scheduleTick() }
        }
    }

    public func stop() {
        inputs.withLock { $0.stopped = true }
        queue.stop()
        render.withLock { display.close() }
    }

    /// Call control's phase.
    public func setPhase(_ phase: ScreenState.Phase) {
        let changed = inputs.withLock { i -> Bool in
            guard phase != i.state.phase else { return false }
            i.state.setPhase(phase, now: Instant.now())
            if case .inCall = phase {} else { i.dropPictures = true }
            i.needsRedraw = true
            return true
        }
        if changed { _ = queue.async { [weak self] in self?.refresh() } }
    }

    /// A button press: wakes a blanked screen.
    public func activity() {
        inputs.withLock { $0.state.activity(now: Instant.now()) }
        _ = queue.async { [weak self] in self?.refresh() }
    }

    public func setFaults(_ list: [ScreenFault]) {
        inputs.withLock { i in
            if i.faults != list { i.faults = list; i.needsRedraw = true }
        }
    }

    /// The local camera's picture for the inset (already small; tightly packed I420).
    func setLocal(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int) {
        localInbox.withLock { $0.picture.copy(from: bytes, width: width, height: height); $0.fresh = true }
    }

    /// Takes a new inset picture, if one came (call with `render` held).
    private func takeLocal(inCall: Bool) {
        guard inCall else { return }
        localInbox.withLock { inbox in
            guard inbox.fresh else { return }
            inbox.fresh = false
            if local == nil { local = I420Picture() }
            local!.copy(from: inbox.picture)
        }
    }

    /// Pictures dropped after a phase change (call with `render` held).
    private func dropPicturesIfAsked() {
        if inputs.withLock({ i -> Bool in defer { i.dropPictures = false }; return i.dropPictures }) {
            hasRemote = false
            local = nil
            localInbox.withLock { $0.fresh = false }
        }
    }

    /// Shows a decoded far-end picture now (the decode thread calls this at the frame's due
    /// time). Returns the flip's time.
    @discardableResult
    func present(remote picture: I420Picture, captureNTP: UInt64?) -> Instant? {
        render.withLock { () -> Instant? in
            dropPicturesIfAsked()
            let (content, faults) = inputs.withLock { i -> (ScreenContent?, [ScreenFault]) in
                guard !i.stopped, case .inCall = i.state.phase else { return (nil, []) }
                i.state.videoShown(now: Instant.now())
                return (i.state.content(now: Instant.now()), i.faults)
            }
            guard let content else { return nil }
            remoteStore.copy(from: picture)
            hasRemote = true
            takeLocal(inCall: true)
            renderer.render(content, faults: faults, remote: remoteStore, local: local, into: &framebuffer)
            let flip = display.present(framebuffer)
            let ms = captureNTP.map { Double(wallClockNanoseconds() - NTPTime.toUnixNanoseconds($0)) / 1e6 }
            let regions = renderer.regions
            inputs.withLock { i in
                i.shownContent = content
                i.regions = regions
                guard flip != nil else { return }
                i.flips += 1
                i.videoFlips += 1
                if let ms {
                    if i.glassToGlass.count >= 4096 { i.glassToGlass.removeFirst(1024) }
                    i.glassToGlass.append(ms)
                }
            }
            return flip
        }
    }

    /// Redraws a text screen when what to show changed (display thread).
    private func refresh() {
        render.withLock {
            dropPicturesIfAsked()
            let now = Instant.now()
            let snapshot = inputs.withLock { i -> (ScreenContent, [ScreenFault], Bool, Bool)? in
                guard !i.stopped else { return nil }
                let content = i.state.content(now: now)
                let videoFlowing: Bool = { if case .inCall = content, i.state.lastVideo != nil { return true }; return false }()
                // While video flows the decode thread draws; only a change of screen matters here.
                if videoFlowing, !i.needsRedraw { return nil }
                guard i.needsRedraw || content != i.shownContent else { return nil }
                i.needsRedraw = false
                return (content, i.faults, videoFlowing, content != i.shownContent)
            }
            guard let (content, faults, videoFlowing, changed) = snapshot else { return }
            if !videoFlowing { hasRemote = false }
            var inCall = false
            if case .inCall = content { inCall = true } else if case .videoPaused = content { inCall = true }
            takeLocal(inCall: inCall)
            renderer.render(content, faults: faults, remote: hasRemote ? remoteStore : nil, local: local, into: &framebuffer)
            if changed { logger.debug("screen", metadata: ["shows": "\(content.name)"]) }
            let flipped = display.present(framebuffer) != nil
            let regions = renderer.regions
            inputs.withLock { i in
                i.shownContent = content
                i.regions = regions
                if flipped { i.flips += 1 }
            }
        }
    }

    /// What is on the screen now, as drawn (for `videophonectl screenshot`).
    public func snapshot() -> Framebuffer {
        if let off = display as? OffscreenDisplay { return off.current }
        return render.withLock { framebuffer }
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
        let name = display.name
        return inputs.withLock { i in
            Figures(content: i.shownContent?.name ?? "none", regions: i.regions, flips: i.flips, videoFlips: i.videoFlips,
                    glassToGlassMs: i.glassToGlass, display: name)
        }
    }
}

extension ScreenService {
    /// The decoder `[video] decoder` asks for: the board's V4L2 mem2mem H.264 decoder
    /// (`v4l2`, or `auto` when one is found), else libavcodec. `auto` falls back to
    /// libavcodec when the hardware one does not open.
    static func makeDecoder(_ c: DeviceConfig, logger: Logger) throws -> any VideoDecoder {
        // libavcodec is loaded (dlopen) with the first software decoder: name the key that needs it.
        func software() throws -> any VideoDecoder {
            do { return try AVCodecH264Decoder() } catch {
                throw CodecError("display.output = \"\(c.displayOutput)\" (video.decoder = \"\(c.videoDecoder)\") needs \(error)")
            }
        }
        if c.videoDecoder == "libavcodec" { return try software() }
        let path = c.videoDecoderDevice ?? V4L2M2MDecoder.find()?.path
        if let path {
            do { return try V4L2M2MDecoder(path: path) } catch {
                if c.videoDecoder == "v4l2" { throw error }
                logger.warning("hardware video decoder unavailable; decoding in software", metadata: ["REASON": "\(error)"])
            }
        } else if c.videoDecoder == "v4l2" {
            throw CodecError("video.decoder = \"v4l2\" and no V4L2 H.264 decoder found")
        }
        return try software()
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
