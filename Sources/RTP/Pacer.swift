import NetworkCore

/// Spreads media on the wire (as libwebrtc's pacer does): packets leave at a pacing rate,
/// a multiple of the congestion controller's target, from a budget that refills with time.
/// A keyframe's packets then reach a bottleneck over tens of milliseconds instead of as one
/// burst that overflows its queue. I/O-free: the caller asks, with the time, whether a
/// packet may go and when the next one can.
public struct Pacer: Sendable {
    /// How far above the target the pacer sends (libwebrtc uses 2.5): room for a frame
    /// larger than average without adding much delay.
    public static let factor = 2.5
    /// Queued media older than this drains faster than the pacing rate: pacing must not
    /// become the delay it is there to avoid.
    public static let maxQueueSeconds = 0.25
    /// The budget never holds more than this much time at the pacing rate.
    static let maxBurst = Duration.milliseconds(10)

    /// Bits per second the pacer lets out (at least the minimum).
    public private(set) var rateBps: Double
    private var budgetBytes = 0.0
    private var lastRefill: Instant?

    public init(targetBps: Double) { rateBps = max(targetBps * Pacer.factor, 100_000) }

    /// The congestion controller moved the target.
    public mutating func setTarget(bps: Double) { rateBps = max(bps * Pacer.factor, 100_000) }

    /// Set when the queue holds more than ``maxQueueSeconds`` at the pacing rate: the rate
    /// that empties it in that time, kept until the queue is short again.
    private var drainBps = 0.0

    func effectiveRate(queuedBytes: Int) -> Double {
        max(rateBps, drainBps)
    }

    private mutating func refill(now: Instant, queuedBytes: Int) {
        let queueSeconds = Double(queuedBytes * 8) / rateBps
        if queueSeconds > Pacer.maxQueueSeconds {
            drainBps = max(drainBps, Double(queuedBytes * 8) / Pacer.maxQueueSeconds)
        } else if queueSeconds < Pacer.maxQueueSeconds / 4 {
            drainBps = 0
        }
        let rate = effectiveRate(queuedBytes: queuedBytes)
        let cap = rate * Pacer.maxBurst.seconds / 8
        if let last = lastRefill {
            budgetBytes = min(budgetBytes + rate * (now - last).seconds / 8, max(cap, 1500))
        } else {
            // A pacer starting now comes out of quiescence: its budget is as full as after
            // any idle spell. (Pacing starts with the peer's first feedback, which races the
            // first keyframe: starting empty spread that keyframe over ~15 ms more in about
            // half the calls, and set-up with it.)
            budgetBytes = max(cap, 1500)
        }
        lastRefill = now
    }

    /// Whether a packet may leave now, with `queuedBytes` waiting (itself included).
    public mutating func maySend(now: Instant, queuedBytes: Int) -> Bool {
        refill(now: now, queuedBytes: queuedBytes)
        return budgetBytes > 0
    }

    /// A packet of `bytes` left.
    public mutating func sent(bytes: Int) {
        // One packet may overdraw the budget; the next waits for it to refill.
        budgetBytes -= Double(bytes)
    }

    /// When the budget is positive again (for the poll loop's timeout).
    public func nextSend(now: Instant, queuedBytes: Int) -> Instant {
        guard budgetBytes <= 0 else { return now }
        let seconds = (-budgetBytes + 1) * 8 / effectiveRate(queuedBytes: queuedBytes)
        return now + .nanoseconds(Int64(seconds * 1e9))
    }
}
