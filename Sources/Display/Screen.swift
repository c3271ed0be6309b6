import Codecs
import NetworkCore

/// What the screen shows, from call control's phase and the video that arrives.
public enum ScreenContent: Sendable, Equatable {
    /// No call: the device's name (and its faults, if any).
    case idle(deviceName: String)
    case calling(peer: String)
    case ringing(peer: String)
    /// In a call: the far end's picture when there is one, else the peer's name.
    case inCall(peer: String)
    /// In a call whose video stopped for a while (the last frame was shown until then).
    case videoPaused(peer: String)
    /// The screen is off (blanked after the idle time).
    case blank

    /// Short name for status and logs: `idle`, `calling`, `ringing`, `in-call`, `video-paused`, `blank`.
    public var name: String {
        switch self {
        case .idle: "idle"
        case .calling: "calling"
        case .ringing: "ringing"
        case .inCall: "in-call"
        case .videoPaused: "video-paused"
        case .blank: "blank"
        }
    }
}

/// A faults line the screens show: `no camera`, `no network`…
public struct ScreenFault: Sendable, Hashable {
    public let text: String
    public init(_ text: String) { self.text = text }
    public static let noCamera = ScreenFault("no camera")
    public static let noNetwork = ScreenFault("no network")
}

/// Text drawn on a screen and where (tests and the board test check these regions).
public struct TextRegion: Sendable, Equatable {
    public var text: String
    public var rect: Rect
}

/// Draws screens into a framebuffer: text screens in the bitmap font, sized to read across
/// a room (the title is about a tenth of the screen's height), and the call screen (the far
/// end fitted to the whole screen with its aspect kept, the local camera as an inset in the
/// bottom-right corner). No I/O; not thread-safe.
public struct ScreenRenderer {
    public private(set) var regions: [TextRegion] = []
    private var scaler = PictureScaler()
    private var insetScaler = PictureScaler()

    public init() {}

    /// The inset's rectangle for a screen: a quarter of the width, 16:9 at most, in the
    /// bottom-right corner with a margin.
    public static func insetArea(screenWidth w: Int, screenHeight h: Int) -> Rect {
        let iw = w / 4, ih = iw * 9 / 16
        let margin = max(4, w / 64)
        return Rect(x: w - iw - margin, y: h - ih - margin, width: iw, height: ih)
    }

    /// Draws `content`. `remote` is the last good far-end picture (drawn in a call),
    /// `local` the local camera's (the inset).
    public mutating func render(_ content: ScreenContent, faults: [ScreenFault], remote: I420Picture?, local: I420Picture?,
                                into fb: inout Framebuffer) {
        regions.removeAll(keepingCapacity: true)
        switch content {
        case .blank:
            fb.clear(Colour.black)
            return
        case .idle(let name):
            if faults.isEmpty {
                textScreen(into: &fb, background: Colour.background, title: name, subtitle: "ready")
            } else {
                textScreen(into: &fb, background: Colour.fault, title: name, subtitle: faults.map(\.text).joined(separator: ", "))
            }
            return
        case .calling(let peer):
            textScreen(into: &fb, background: Colour.accent, title: "calling", subtitle: peer)
        case .ringing(let peer):
            textScreen(into: &fb, background: Colour.ringing, title: peer, subtitle: "is calling")
        case .inCall(let peer):
            if let remote, !remote.isEmpty {
                scaler.draw(remote, into: &fb, area: fb.bounds)
            } else {
                textScreen(into: &fb, background: Colour.background, title: peer, subtitle: "in call")
            }
        case .videoPaused(let peer):
            textScreen(into: &fb, background: Colour.dim, title: "video paused", subtitle: peer)
        }
        if let local, !local.isEmpty {
            let area = ScreenRenderer.insetArea(screenWidth: fb.width, screenHeight: fb.height)
            let border = Rect(x: area.x - 2, y: area.y - 2, width: area.width + 4, height: area.height + 4)
            fb.fill(border, color: Colour.white)
            insetScaler.draw(local, into: &fb, area: area)
        }
        if !faults.isEmpty { banner(faults.map(\.text).joined(separator: ", "), into: &fb) }
    }

    private mutating func textScreen(into fb: inout Framebuffer, background: UInt32, title: String, subtitle: String) {
        fb.clear(background)
        let maxTitle = max(1, fb.height / 10 / BitmapFont.glyphHeight)
        let titleScale = BitmapFont.scale(toFit: title, width: fb.width * 9 / 10, maxScale: maxTitle)
        let subScale = BitmapFont.scale(toFit: subtitle, width: fb.width * 9 / 10, maxScale: max(1, titleScale / 2))
        let total = BitmapFont.glyphHeight * (titleScale + subScale) + 2 * titleScale * 2
        var y = (fb.height - total) / 2
        let t = BitmapFont.drawCentred(title, into: &fb, centerX: fb.width / 2, y: y, scale: titleScale, color: Colour.white)
        regions.append(TextRegion(text: title, rect: t))
        y += BitmapFont.glyphHeight * titleScale + 4 * titleScale
        let s = BitmapFont.drawCentred(subtitle, into: &fb, centerX: fb.width / 2, y: y, scale: subScale, color: Colour.white)
        regions.append(TextRegion(text: subtitle, rect: s))
    }

    private mutating func banner(_ text: String, into fb: inout Framebuffer) {
        let scale = BitmapFont.scale(toFit: text, width: fb.width * 9 / 10, maxScale: max(1, fb.height / 20 / BitmapFont.glyphHeight))
        let h = BitmapFont.glyphHeight * scale * 2
        fb.fill(Rect(x: 0, y: 0, width: fb.width, height: h), color: Colour.fault)
        let r = BitmapFont.drawCentred(text, into: &fb, centerX: fb.width / 2, y: h / 4, scale: scale, color: Colour.white)
        regions.append(TextRegion(text: text, rect: r))
    }
}

/// What the screen should show, decided from call control's phase, the video and the
/// user's activity, with a clock: the last good frame stays up for ``pauseAfter`` after the
/// stream stops, then "video paused"; with no call and no activity for ``blankAfter`` the
/// screen blanks, and a button press or a ring wakes it. No I/O.
public struct ScreenState: Sendable {
    public enum Phase: Sendable, Equatable {
        case idle, calling(String), ringing(String), inCall(String)
    }
    public var deviceName: String
    public private(set) var phase: Phase = .idle
    public private(set) var lastActivity: Instant
    public private(set) var lastVideo: Instant?
    /// Nil: never blank.
    public var blankAfter: Duration?
    public var pauseAfter: Duration

    public init(deviceName: String, blankAfter: Duration?, pauseAfter: Duration = .seconds(2), now: Instant) {
        self.deviceName = deviceName
        self.blankAfter = blankAfter
        self.pauseAfter = pauseAfter
        lastActivity = now
    }

    /// Call control's phase changed: any change counts as activity (a ring wakes the screen).
    public mutating func setPhase(_ p: Phase, now: Instant) {
        guard p != phase else { return }
        lastVideo = nil
        phase = p
        lastActivity = now
    }

    /// The button was pressed (or another user action): wakes the screen.
    public mutating func activity(now: Instant) { lastActivity = now }

    /// A far-end picture was shown.
    public mutating func videoShown(now: Instant) { lastVideo = now; lastActivity = now }

    /// What to show now.
    public func content(now: Instant) -> ScreenContent {
        switch phase {
        case .idle:
            if let b = blankAfter, now - lastActivity >= b { return .blank }
            return .idle(deviceName: deviceName)
        case .calling(let p): return .calling(peer: p)
        case .ringing(let p): return .ringing(peer: p)
        case .inCall(let p):
            if let v = lastVideo, now - v >= pauseAfter { return .videoPaused(peer: p) }
            return .inCall(peer: p)
        }
    }

    /// Whether the last frame is still the picture to show.
    public func showsVideo(now: Instant) -> Bool {
        if case .inCall = content(now: now), lastVideo != nil { return true }
        return false
    }
}
