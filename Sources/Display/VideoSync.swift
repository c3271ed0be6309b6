import NetworkCore

/// One RTCP sender report's pairing of wall clock (NTP) and media clock (RTP timestamp).
public struct RTPClockMapping: Sendable, Equatable {
    /// NTP time in seconds (since 1900, as a Double: microsecond precision for a century).
    public var ntpSeconds: Double
    public var rtpTimestamp: UInt32
    public var clockRate: Double

    public init(ntp: UInt64, rtpTimestamp: UInt32, clockRate: Double) {
        ntpSeconds = Double(ntp >> 32) + Double(ntp & 0xFFFF_FFFF) / 4_294_967_296
        self.rtpTimestamp = rtpTimestamp
        self.clockRate = clockRate
    }

    /// The sender's wall-clock time of `rtp` (timestamps within ±2³¹ of the report's).
    public func ntpSeconds(ofRTP rtp: UInt32) -> Double {
        ntpSeconds + Double(Int32(bitPattern: rtp &- rtpTimestamp)) / clockRate
    }

    /// The RTP timestamp the sender's clock shows at `ntp` seconds.
    public func rtp(atNTPSeconds ntp: Double) -> UInt32 {
        let ticks = ((ntp - ntpSeconds) * clockRate).rounded()
        let clamped = max(-2_147_483_648, min(2_147_483_647, ticks))
        return rtpTimestamp &+ UInt32(bitPattern: Int32(clamped))
    }
}

/// When to show each received video frame: at the moment its RTP timestamp maps to on the
/// clock that plays the audio (lip sync through the two streams' RTCP sender reports), or,
/// before those exist, after a small adaptive jitter buffer.
///
/// The chain: video RTP → sender's NTP (video SR) → audio RTP at that NTP (audio SR) → when
/// the speaker plays that audio timestamp (the playout anchor: a timestamp the speaker
/// thread rendered and the instant it leaves the speaker). No I/O; time is an argument.
public struct VideoPlayoutScheduler: Sendable {
    public enum Mode: String, Sendable { case lipSync = "lip-sync", jitterBuffer = "jitter-buffer", late }
    public struct Decision: Sendable, Equatable {
        /// When to flip the frame onto the screen.
        public var due: Instant
        public var mode: Mode
        public init(due: Instant, mode: Mode) { self.due = due; self.mode = mode }
    }

    public private(set) var video: RTPClockMapping?
    public private(set) var audio: RTPClockMapping?
    /// An audio RTP timestamp and the instant it is heard.
    public private(set) var audioAnchor: (rtp: UInt32, heard: Instant)?
    /// Interarrival jitter of frames (RFC 3550 estimator over frame arrivals), seconds.
    public private(set) var jitterSeconds = 0.0
    /// The jitter buffer's delay beyond the fastest recent frame: 2.5 × jitter plus a margin
    /// for decoding, between ``minimumDelay`` and ``maximumDelay``.
    public var targetDelay: Duration {
        let ms = min(maximumDelay.milliseconds, max(minimumDelay.milliseconds, 2.5 * jitterSeconds * 1000 + decodeMargin.milliseconds))
        return .nanoseconds(Int64(ms * 1e6))
    }
    public var minimumDelay: Duration = .milliseconds(5)
    public var maximumDelay: Duration = .milliseconds(250)
    /// Decode plus compose time set aside before the due time.
    public var decodeMargin: Duration = .milliseconds(8)
    /// A lip-sync time further ahead than this is distrusted (a stale anchor or report).
    public var maximumHold: Duration = .milliseconds(1000)

    private var lastFrame: (rtp: UInt32, arrival: Instant)?
    /// Transit (arrival − RTP time) of recent frames, seconds, in a small ring: the fastest
    /// is the baseline the jitter buffer adds its delay to.
    private var transits: [Double] = []
    private var transitNext = 0
    private var rtpBase: (rtp: UInt32, extended: Int64)?
    public static let transitWindow = 90

    public init() {}

    public mutating func videoSenderReport(ntp: UInt64, rtp: UInt32) { video = RTPClockMapping(ntp: ntp, rtpTimestamp: rtp, clockRate: 90_000) }
    public mutating func audioSenderReport(ntp: UInt64, rtp: UInt32) { audio = RTPClockMapping(ntp: ntp, rtpTimestamp: rtp, clockRate: 48_000) }
    /// The speaker thread played audio timestamp `rtp`; it is heard at `heard` (now plus
    /// the sound card's queue).
    public mutating func audioPlayed(rtp: UInt32, heard: Instant) { audioAnchor = (rtp, heard) }
    /// Audio stopped playing (silence): lip sync waits for it to start again.
    public mutating func audioStopped() { audioAnchor = nil }

    /// Seconds of the RTP clock since the first frame, unwrapped.
    private mutating func extendedSeconds(_ rtp: UInt32) -> Double {
        guard let base = rtpBase else { rtpBase = (rtp, 0); return 0 }
        let ext = base.extended + Int64(Int32(bitPattern: rtp &- base.rtp))
        rtpBase = (rtp, ext)
        return Double(ext) / 90_000
    }

    /// A frame arrived (complete) at `arrival`: updates the jitter estimate and returns
    /// when to show it.
    public mutating func schedule(rtp: UInt32, arrival: Instant, now: Instant) -> Decision {
        let mediaSeconds = extendedSeconds(rtp)
        let transit = Double(arrival.nanoseconds) / 1e9 - mediaSeconds
        if let last = lastFrame, last.rtp != rtp {
            let d = abs((arrival - last.arrival).seconds - Double(Int32(bitPattern: rtp &- last.rtp)) / 90_000)
            // A jump of seconds is a sender restart, not jitter.
            if d < 1 { jitterSeconds += (d - jitterSeconds) / 16 }
        }
        lastFrame = (rtp, arrival)
        if transits.count < VideoPlayoutScheduler.transitWindow { transits.append(transit) } else { transits[transitNext] = transit }
        transitNext = (transitNext + 1) % VideoPlayoutScheduler.transitWindow
        let baseline = transits.min() ?? transit

        if let synced = lipSyncTime(rtp: rtp) {
            if synced < now { return Decision(due: now, mode: .late) }
            if synced - now <= maximumHold { return Decision(due: synced, mode: .lipSync) }
        }
        let expected = Instant(nanoseconds: UInt64(max(0, (mediaSeconds + baseline) * 1e9))) + targetDelay
        return Decision(due: max(now, min(expected, now + maximumDelay)), mode: .jitterBuffer)
    }

    /// When the audio that goes with video timestamp `rtp` is heard, if the reports and the
    /// anchor exist.
    public func lipSyncTime(rtp: UInt32) -> Instant? {
        guard let video, let audio, let anchor = audioAnchor else { return nil }
        let ntp = video.ntpSeconds(ofRTP: rtp)
        let audioRTP = audio.rtp(atNTPSeconds: ntp)
        let offset = Double(Int32(bitPattern: audioRTP &- anchor.rtp)) / 48_000
        let ns = Int64(offset * 1e9)
        return ns >= 0 ? anchor.heard + .nanoseconds(ns) : anchor.heard - .nanoseconds(-ns)
    }
}
