import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// The video send rate, from what the receiver reports: loss-based control after the
/// loss half of Google Congestion Control (draft-ietf-rmcat-gcc-02 §6), capped by the
/// receiver's REMB estimate when it sends one.
///
/// Loss under 2 % lets the rate grow 8 % per second back towards the configured maximum;
/// 2–10 % holds it (random loss that NACK repairs is no reason to starve the picture).
/// Above 10 % the loss is a bottleneck dropping what does not fit, so the rate goes to
/// what got through (what was actually sent in the last second, less the loss), less 5 %:
/// one report brings it under the link, where GCC's gentler cut (half the loss fraction)
/// takes several and freezes the picture meanwhile. Measured from the real sending rate,
/// reports that still describe the queue before a cut do not cut again and again.
/// With transport-wide feedback the delay-based estimate (``DelayBasedEstimator``) caps
/// the target too: it sees the queue of a bottleneck grow before the first drop, so the
/// rate comes down before the picture freezes.
///
/// I/O-free: reports come in with their time, the new target comes out.
public struct BitrateController: Sendable {
    public let minimumKbps: Int
    public let maximumKbps: Int
    /// What the encoder should aim for now.
    public private(set) var targetKbps: Int
    /// The loss-based half's present value.
    public private(set) var lossBasedKbps: Double
    private var rembKbps: Int?
    private var lastIncrease: Instant?
    private var lastDecrease: Instant?
    private var lastTransportFeedback: Instant?
    private var lossWindow: (start: Instant, arrived: UInt64, lost: UInt64)?
    /// Present once transport-wide feedback arrives (the peer negotiated transport-cc).
    public private(set) var delayBased: DelayBasedEstimator?

    public init(startKbps: Int, minimumKbps: Int = 100, maximumKbps: Int) {
        self.minimumKbps = minimumKbps
        self.maximumKbps = max(minimumKbps, maximumKbps)
        lossBasedKbps = Double(min(max(startKbps, minimumKbps), self.maximumKbps))
        targetKbps = Int(lossBasedKbps)
    }

    /// An RTCP receiver report block for our video: `fractionLost` as sent (x/256) and
    /// the rate we actually sent at over the last second (nil: assume the target).
    /// Returns the new target when it changed.
    public mutating func receivedReport(fractionLost: UInt8, sendingKbps: Double? = nil, now: Instant) -> Int? {
        // With transport-wide feedback the loss comes from it: it knows a reordered packet
        // from a lost one, where a report sent early (every 100 ms while NACKing) counts
        // every packet still overtaken on the path as lost.
        if let t = lastTransportFeedback, now - t < .seconds(1) { return nil }
        return lossUpdate(loss: Double(fractionLost) / 256, sendingKbps: sendingKbps, now: now)
    }

    private mutating func lossUpdate(loss: Double, sendingKbps: Double?, now: Instant) -> Int? {
        if loss > 0.10 {
            // One cut per congestion event: reports in the next half second still describe
            // the queue as it was before the cut took effect.
            if let last = lastDecrease, now - last < .milliseconds(500) { return nil }
            let sent = sendingKbps ?? lossBasedKbps
            lossBasedKbps = min(lossBasedKbps, sent * (1 - loss) * 0.95)
            lastDecrease = now
        } else if loss < 0.02 {
            // Grow at most once a second, however often reports come.
            // Grow at most once a second, however often reports come.
            if lastIncrease.map({ now - $0 >= .seconds(1) }) ?? true {
                lossBasedKbps = lossBasedKbps * 1.08 + 1
                lastIncrease = now
            }
        }
        lossBasedKbps = min(max(lossBasedKbps, Double(minimumKbps)), Double(maximumKbps))
        return update()
    }

    /// One transport-wide feedback message, paired with what was sent.
    /// `arrived` and `lost` are the send history's running counts (``SendHistory``): the
    /// loss-based half takes its loss from them, over windows of half a second.
    public mutating func receivedTransportFeedback(_ results: [SendHistory.Result], arrived: UInt64, lost: UInt64, now: Instant) -> Int? {
        if delayBased == nil {
            delayBased = DelayBasedEstimator(startBps: Double(targetKbps) * 1000, minimumBps: Double(minimumKbps) * 1000,
                                             maximumBps: Double(maximumKbps) * 1000)
        }
        lastTransportFeedback = now
        delayBased!.update(results: results, now: now)
        if let w = lossWindow {
            let n = (arrived &- w.arrived) &+ (lost &- w.lost)
            if now - w.start >= .milliseconds(500) && n >= 20 {
                let loss = Double(lost &- w.lost) / Double(n)
                // What got through is the rate to fall to: the acknowledged rate.
                _ = lossUpdate(loss: loss, sendingKbps: delayBased!.ackedBps.map { $0 / 1000 / max(1 - loss, 0.1) }, now: now)
                lossWindow = (now, arrived, lost)
            }
        } else {
            lossWindow = (now, arrived, lost)
        }
        // A lift that held for a second was room: the next probe comes sooner and may lift
        // further (GCC's exponential probing). One that ran into overuse starts over small.
        if let lift = lastProbeLift {
            if delayBased!.overuseEvents > overuseEventsAtLift {
                probeStep = Self.firstProbeStep
                prober.interval = ProbeController.calmInterval
                lastProbeLift = nil
            } else if now - lift >= .seconds(1) {
                probeStep = min(probeStep + 0.35, Self.maxProbeStep)
                prober.interval = ProbeController.followUpInterval
                lastProbeLift = nil
            }
        }
        if var proved = prober.feedback(results, now: now) {
            // A probe is a few kilobytes: a shaper's token bucket (tc tbf, an ISP's policer)
            // lets it through at line rate whatever the rate behind it. So one probe lifts
            // the estimate by at most ``probeStep`` times itself and what the media gets
            // through: the media then shows whether the room is real, and a false lift
            // overshoots the link by little enough for the delay signal to catch it before
            // the shaper's queue overflows.
            let estimate = delayBased!.estimateBps
            proved = min(proved, estimate * probeStep)
            if let acked = delayBased!.ackedBps { proved = min(proved, max(estimate, probeStep * acked + 10_000)) }
            if proved > estimate {
                lastProbeLift = now
                overuseEventsAtLift = delayBased!.overuseEvents
            }
            delayBased!.probed(bps: proved)
            // A path proved to carry more lifts the loss-based half too (it only cuts on
            // heavy loss, and climbs 8 % a second).
            lossBasedKbps = min(max(lossBasedKbps, proved / 1000), Double(maximumKbps))
        }
        return update()
    }

    /// The bottleneck's queue is about to overflow (``QueueDrainHold`` started a hold): the
    /// delay-based half cuts now. Returns the new target when it changed.
    public mutating func queueOverflowing(now: Instant) -> Int? {
        guard delayBased != nil else { return nil }
        delayBased!.queueOverflowing(now: now)
        return update()
    }

    /// How far one probe may lift the estimate: ``firstProbeStep`` times, growing to
    /// ``maxProbeStep`` while lifts hold.
    public private(set) var probeStep = BitrateController.firstProbeStep
    public static let firstProbeStep = 1.3
    public static let maxProbeStep = 2.0
    private var lastProbeLift: Instant?
    private var overuseEventsAtLift = 0

    /// Finds headroom while the delay-based estimate holds steady.
    public private(set) var prober = ProbeController()

    /// A probe cluster to send now, when one is due (transport-wide feedback only).
    public mutating func probeCluster(now: Instant) -> ProbeController.Cluster? {
        guard let d = delayBased else { return nil }
        return prober.cluster(now: now, estimateBps: Double(targetKbps) * 1000, maximumBps: Double(maximumKbps) * 1000, calm: d.isCalm(now: now))
    }

    /// A REMB message (the receiver's delay-based estimate), in bits per second.
    public mutating func receivedREMB(bitsPerSecond: UInt64) -> Int? {
        rembKbps = Int(min(bitsPerSecond / 1000, UInt64(Int32.max)))
        return update()
    }

    private mutating func update() -> Int? {
        var t = Int(lossBasedKbps.rounded())
        if let remb = rembKbps { t = min(t, remb) }
        if let d = delayBased { t = min(t, Int(d.estimateBps / 1000)) }
        t = min(max(t, minimumKbps), maximumKbps)
        guard t != targetKbps else { return nil }
        targetKbps = t
        return t
    }
}
