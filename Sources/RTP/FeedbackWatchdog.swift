import NetworkCore

/// Whether video should pause because the peer's transport feedback stopped (an outage,
/// a link that went away): frames sent into a dead path are lost, and the picture after
/// it then waits for a keyframe requested across a round trip. Paused, the encoder takes
/// no frames; audio goes on (its feedback tells when the path is back) and the first
/// video frame after it is a keyframe, sent at once. As libwebrtc's congestion window
/// stops media when nothing is acknowledged. I/O-free.
public struct FeedbackWatchdog: Sendable {
    /// Silence this long, where feedback normally comes every 50 ms, pauses video (a
    /// second: a busy peer or a loaded machine stalls for a few hundred ms).
    public var silence: Duration
    private var lastFeedback: Instant?
    /// Times video was paused.
    public private(set) var pauses = 0
    private var paused = false

    public init(silence: Duration = .seconds(1)) { self.silence = silence }

    /// Transport-wide feedback arrived.
    public mutating func feedbackArrived(now: Instant) { lastFeedback = now }

    /// What to do with a video frame now.
    public enum Decision: Sendable, Equatable {
        /// Feedback is flowing: send.
        case send
        /// Feedback stopped: hold the frame (do not encode it).
        case hold
        /// Still silent, but one frame a ``probeInterval`` goes (as a keyframe): when only
        /// video carries transport-wide numbers, its feedback must be able to restart.
        case probe
    }

    /// One frame a second goes while paused.
    public var probeInterval: Duration = .seconds(1)
    private var lastProbe: Instant?

    /// What to do with the frame at hand. Never holds before the first feedback: a peer
    /// that does not send it is never paused.
    public mutating func decide(now: Instant) -> Decision {
        guard let last = lastFeedback, now - last > silence else {
            paused = false
            return .send
        }
        if !paused {
            paused = true
            pauses += 1
            lastProbe = now
            return .hold
        }
        if let p = lastProbe, now - p < probeInterval { return .hold }
        lastProbe = now
        return .probe
    }
}
