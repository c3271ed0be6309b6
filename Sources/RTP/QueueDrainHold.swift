import NetworkCore

/// Whether to skip encoding video frames for a moment because the bottleneck's queue is
/// about to overflow. After a drop in the path's rate a shallow buffer (100 ms in a home
/// router, `tc tbf latency 100ms`) fills faster than the congestion controller's cut
/// empties it: what it drops must be resent through the same full queue, new frames keep
/// it full, a resend is dropped too and the picture waits another repair round (a 360 ms
/// freeze in the simulated 2 → 1 Mbit/s step). Skipping frames for about the queue's
/// length lets it drain: resends get through a queue sooner, and the receiver could not
/// show frames past its gap anyway. (libwebrtc's congestion window stops media likewise
/// when too much is unacknowledged.)
///
/// Only a queue that is both long and growing fast holds: one that creeps up (a probe that
/// overshot by 30 %) is the controller's to bring down; skipping frames then would only
/// hide its signal. A skipped frame is not encoded, so the next still refers to one the
/// receiver has. One hold per ``rearm``, never longer than ``maximumHold`` (shorter than
/// a freeze). I/O-free: times come in as arguments; fixed size.
public struct QueueDrainHold: Sendable {
    /// A queue shorter than this never holds.
    public var minimumQueue: Duration
    /// Growth in queueing delay per unit of time, over about ``growthWindow``, that holds:
    /// 0.4 means sending at 1.4 times what the bottleneck passes.
    public var minimumGrowth: Double
    /// A hold lasts this many times the queue measured, up to ``maximumHold``.
    public var lengthFactor = 1.25
    /// The longest hold: a hold must not itself become a freeze (200 ms).
    public var maximumHold: Duration
    /// No new hold within this of the last one's start.
    public var rearm: Duration
    /// Growth is measured against the newest sample at least this old.
    public static let growthWindow = Duration.milliseconds(80)
    /// Holds started, and frames skipped by them.
    public private(set) var holds = 0
    public private(set) var framesSkipped = 0
    private var until: Instant?
    private var lastStart: Instant?
    private var recent: [(at: Instant, queue: Duration)] = []
    private static let maxSamples = 8

    public init(minimumQueue: Duration = .milliseconds(60), minimumGrowth: Double = 0.4,
                maximumHold: Duration = .milliseconds(150), rearm: Duration = .seconds(1)) {
        self.minimumQueue = minimumQueue
        self.minimumGrowth = minimumGrowth
        self.maximumHold = maximumHold
        self.rearm = rearm
        recent.reserveCapacity(Self.maxSamples)
    }

    /// Transport feedback showed packets that met `queue` at the bottleneck (the longest in
    /// the message); delays up to `jitterBound` are what the path's jitter alone gives (the
    /// delay-based estimator's overuse threshold). A queue past 1.5 times that and
    /// ``minimumQueue``, growing by ``minimumGrowth``, holds video for ``lengthFactor``
    /// times the queue: it drains in its own length once nothing new enters, and the
    /// resends of what it dropped need room too. (1.5 times cost the 300 kbit/s step a
    /// longer freeze; 1 time left one phase of the 2 → 1 step at 283 ms.)
    /// Returns true when a hold starts (the queue is about to overflow: a congestion signal).
    @discardableResult
    public mutating func queueMeasured(_ queue: Duration, jitterBound: Duration, now: Instant) -> Bool {
        let past = recent.last { now - $0.at >= Self.growthWindow }
        if recent.count == Self.maxSamples { recent.removeFirst() }
        recent.append((now, queue))
        guard queue >= max(minimumQueue, jitterBound * 1.5), let p = past,
              (queue - p.queue) / (now - p.at) >= minimumGrowth else { return false }
        if let last = lastStart, now - last < rearm { return false }
        lastStart = now
        until = now + min(queue * lengthFactor, maximumHold)
        holds += 1
        return true
    }

    /// Whether the frame at hand may be encoded now (false: skip it).
    public mutating func maySend(now: Instant) -> Bool {
        guard let u = until, now < u else {
            until = nil
            return true
        }
        framesSkipped += 1
        return false
    }
}
