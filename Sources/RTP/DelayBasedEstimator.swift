import NetworkCore

/// The delay-based half of Google Congestion Control (draft-ietf-rmcat-gcc-02 §5), fed by
/// transport-wide feedback on the sender: packets grouped by send time, a trendline
/// filter over the one-way delay variation, an overuse detector with an adaptive
/// threshold, and AIMD rate control around a link capacity estimate.
///
/// A bottleneck shows as a growing queue (delay) long before it drops packets, so this
/// estimate falls while the loss-based one still sees a clean link. I/O-free: every input
/// carries its own time.
public struct DelayBasedEstimator: Sendable {
    public enum Usage: String, Sendable { case normal, overusing, underusing }
    enum RateState { case hold, increase, decrease }

    struct Group { var firstSend: Int64; var firstArrival: Int64; var lastSend: Int64; var lastArrival: Int64 }

    public let minimumBps: Double
    public let maximumBps: Double
    /// The rate the path takes without queueing, as far as delay tells.
    public private(set) var estimateBps: Double
    public private(set) var usage: Usage = .normal
    /// The last trend (ms of queueing delay growth per ms), for status and tests.
    public private(set) var trend = 0.0
    public private(set) var threshold = 12.5
    /// Overuse events since the start.
    public private(set) var overuseEvents = 0

    private var current: Group?
    private var previous: Group?
    // Trendline filter (window of 20 smoothed delay samples).
    private var samples: [(x: Double, y: Double)] = []
    private var sampleStart = 0
    private static let windowSize = 20
    private var accumulatedDelay = 0.0
    private var smoothedDelay = 0.0
    private var firstArrivalMs: Double?
    private var numDeltas = 0
    private var previousTrend = 0.0
    // Overuse detector.
    private var overuseTimeMs = -1.0
    private var overuseCounter = 0
    private var lastThresholdUpdateMs: Double?
    // AIMD.
    private var state = RateState.increase
    private var lastRateUpdateMs: Double?
    private var lastDecreaseMs: Double?
    public private(set) var capacityKbps: Double?
    private var capacityDeviation = 0.4
    // Acknowledged bitrate: (arrival µs, bytes) of recent acked packets, a bounded ring.
    private var acked: [(arrival: Int64, size: Int)] = []
    private var ackedStart = 0
    private static let ackedWindowMicros: Int64 = 300_000
    private static let maxAcked = 2048
    public private(set) var ackedBps: Double?

    /// Growth per second far from any known capacity (GCC's 8 %); near it the estimate
    /// grows a packet per response time, and probes find headroom quickly.
    public var multiplicativeGrowthPerSecond = 1.08

    public init(startBps: Double, minimumBps: Double, maximumBps: Double) {
        self.minimumBps = minimumBps
        self.maximumBps = max(minimumBps, maximumBps)
        estimateBps = min(max(startBps, minimumBps), self.maximumBps)
        samples.reserveCapacity(Self.windowSize)
        acked.reserveCapacity(Self.maxAcked)
        recentQueue.reserveCapacity(65)
        baseBuckets.reserveCapacity(11)
        arrivals.reserveCapacity(512)
    }

    /// One message's arrived packets (send µs, arrival µs, bytes), reused from message to message.
    private var arrivals: [(send: Int64, arrival: Int64, size: Int)] = []

    /// One feedback message's results (any order); `now` is the sender's clock. Returns
    /// the new estimate in bit/s.
    @discardableResult
    public mutating func update(results: [SendHistory.Result], now: Instant) -> Double {
        let nowMs = Double(now.nanoseconds) / 1e6
        // Loss with a queue behind it is the queue overflowing: overuse now, without
        // waiting for the trend (random loss on a calm path is the loss-based half's).
        var lostCount = 0, lateCount = 0, fresh = 0
        for r in results where r.probe < 0 {
            if r.arrivalMicros == nil { lostCount += 1 }
            if r.late { lateCount += 1 } else { fresh += 1; recordSent(send: r.sendMicros, size: r.size) }
        }
        updateSentRate()
        // Packets reported lost before and arriving now were reordered: they take back
        // the loss they were counted as.
        let lost = lostCount - lateCount
        recentLoss = 0.7 * recentLoss + 0.3 * (fresh == 0 ? 0 : Double(max(lost, 0)) / Double(fresh))
        // The arrivals in send order, in storage kept from message to message. Feedback
        // lists packets by sequence number, which is send order: the sort (which allocates
        // its merge buffer) runs only when something is out of order.
        arrivals.removeAll(keepingCapacity: true)
        var inOrder = true
        for r in results {
            guard let arrival = r.arrivalMicros else { continue }
            if let last = arrivals.last, r.sendMicros < last.send { inOrder = false }
            arrivals.append((r.sendMicros, arrival, r.size))
        }
        if !inOrder { arrivals.sort { $0.send < $1.send } }
        for a in arrivals {
            recordAcked(arrival: a.arrival, size: a.size)
            packet(send: a.send, arrival: a.arrival)
        }
        // The queue each packet met, not just each group's first: packets queued back to
        // back merge into one group whose first packet may predate the queue.
        let base = baseBuckets.reduce(Double.infinity) { min($0, $1.minimum) }
        if base.isFinite, !arrivals.isEmpty {
            peakQueueMs = arrivals.reduce(0) { max($0, Double($1.arrival - $1.send) / 1000 - base) }
        }
        // The queue's floor lags by design (150 ms, for jitter); the latest group's own
        // queue is what a buffer that is overflowing right now shows, with heavy loss
        // (a radio link's few per cent of random loss plus a scheduling hiccup is not it).
        queueLoss = (recentLoss > 0.05 && (queueDelayMs ?? 0) > queueThresholdMs / 2)
            || (recentLoss > 0.1 && (lastQueueSample ?? 0) > queueThresholdMs)
        if queueLoss && usage != .overusing {
            overuseEvents += 1
            usage = .overusing
        }
        updateAckedRate()
        updateRate(nowMs: nowMs)
        return estimateBps
    }

    /// The sender saw the bottleneck's queue about to overflow (``QueueDrainHold``: long and
    /// growing fast, from each packet's delay): overuse now, before the group floors (which
    /// lag by a group) or the trend show it, so that frames after the hold come at a cut
    /// rate instead of refilling the queue. Returns the estimate in bit/s.
    @discardableResult
    public mutating func queueOverflowing(now: Instant) -> Double {
        if usage != .overusing {
            overuseEvents += 1
            usage = .overusing
        }
        updateRate(nowMs: Double(now.nanoseconds) / 1e6)
        return estimateBps
    }

    /// Whether the estimate holds steady: no overuse, no cut in the last second, a calm
    /// queue. Probing only then says something about headroom.
    public func isCalm(now: Instant) -> Bool {
        let nowMs = Double(now.nanoseconds) / 1e6
        return usage == .normal && state != .decrease && (queueDelayMs ?? 0) < queueThresholdMs / 2
            && (lastDecreaseMs.map { nowMs - $0 > 1000 } ?? true)
    }

    /// A probe proved the path carries `bps`: a higher estimate is taken at once, and
    /// the capacity learnt before is forgotten (the path changed).
    public mutating func probed(bps: Double) {
        guard bps > estimateBps else { return }
        estimateBps = min(bps, maximumBps)
        capacityKbps = nil
        state = .increase
    }

    // MARK: Grouping and trendline

    private mutating func packet(send: Int64, arrival: Int64) {
        guard var g = current else {
            current = Group(firstSend: send, firstArrival: arrival, lastSend: send, lastArrival: arrival)
            return
        }
        // Reordered behind the group: its send time says nothing new.
        if send < g.firstSend { return }
        let sameBurst = send - g.firstSend <= 5_000
        // Packets that queued behind each other arrive back to back: one group too.
        let arrivalDelta = arrival - g.lastArrival
        // At most 100 ms of them (as GCC's inter-arrival grouping): behind a standing queue
        // every packet arrives back to back, and one endless group would hide the queue.
        let queuedBurst = arrivalDelta >= 0 && arrivalDelta < 5_000 && arrivalDelta - (send - g.lastSend) < 0
            && arrival - g.firstArrival < 100_000
        if sameBurst || queuedBurst {
            g.lastSend = max(g.lastSend, send)
            g.lastArrival = max(g.lastArrival, arrival)
            current = g
            return
        }
        standingQueue(g)
        if let p = previous {
            let sendDeltaMs = Double(g.lastSend - p.lastSend) / 1000
            let arrivalDeltaMs = Double(g.lastArrival - p.lastArrival) / 1000
            // A clock jump or a reset on the far side: start over rather than act on it.
            if arrivalDeltaMs > 3000 || arrivalDeltaMs < -1000 {
                resetTrend()
            } else {
                trendline(arrivalDeltaMs: arrivalDeltaMs, sendDeltaMs: sendDeltaMs, arrivalMs: Double(g.lastArrival) / 1000)
            }
        }
        previous = g
        current = Group(firstSend: send, firstArrival: arrival, lastSend: send, lastArrival: arrival)
    }

    private mutating func resetTrend() {
        samples.removeAll(keepingCapacity: true)
        sampleStart = 0
        accumulatedDelay = 0; smoothedDelay = 0; firstArrivalMs = nil; numDeltas = 0
        overuseTimeMs = -1; overuseCounter = 0
    }

    private mutating func trendline(arrivalDeltaMs: Double, sendDeltaMs: Double, arrivalMs: Double) {
        numDeltas = min(numDeltas + 1, 1000)
        accumulatedDelay += arrivalDeltaMs - sendDeltaMs
        smoothedDelay = 0.9 * smoothedDelay + 0.1 * accumulatedDelay
        let first = firstArrivalMs ?? arrivalMs
        firstArrivalMs = first
        let sample = (x: arrivalMs - first, y: smoothedDelay)
        if samples.count < Self.windowSize {
            samples.append(sample)
        } else {
            samples[sampleStart] = sample
            sampleStart = (sampleStart + 1) % Self.windowSize
        }
        if samples.count == Self.windowSize, let slope = Self.slope(samples) { trend = slope }
        detect(sendDeltaMs: sendDeltaMs, nowMs: arrivalMs)
    }

    // MARK: Standing queue

    /// One-way delay of each group's first packet (its own burst does not delay it), less
    /// the smallest seen in the last ten seconds: the queue the path holds for us. The
    /// trend reacts within a few hundred ms; a shallow bottleneck buffer (100 ms in a home
    /// router) overflows sooner, so a queue past a jitter-scaled bound is overuse at once.
    private mutating func standingQueue(_ g: Group) {
        let owd = Double(g.firstArrival - g.firstSend) / 1000
        let second = g.firstArrival / 1_000_000
        if let last = baseBuckets.last, last.second == second {
            baseBuckets[baseBuckets.count - 1].minimum = min(last.minimum, owd)
        } else {
            baseBuckets.append((second, owd))
            if baseBuckets.count > 10 { baseBuckets.removeFirst() }
        }
        let base = baseBuckets.reduce(Double.infinity) { min($0, $1.minimum) }
        let q = owd - base
        // The standing queue is the floor of the last 150 ms: a queue delays every packet,
        // jitter only some (CoDel's insight). Jitter that reorders packets by ±30 ms
        // otherwise reads as a 60 ms queue and starves the call.
        recentQueue.append((g.firstArrival, q))
        while recentQueue.count > 1, recentQueue[0].arrival < g.firstArrival - 150_000 || recentQueue.count > 64 { recentQueue.removeFirst() }
        let floor = recentQueue.reduce(Double.infinity) { min($0, $1.delay) }
        // The last 50 ms alone: a queue building now has lifted it already, while jitter
        // that reorders still leaves an early packet in it.
        shortFloorMs = recentQueue.reduce(Double.infinity) { a, r in r.arrival >= g.firstArrival - 50_000 ? min(a, r.delay) : a }
        // Jitter is learnt while the queue is calm: a queue that builds would otherwise
        // raise its own threshold as it grows.
        if let previous = lastQueueSample, floor < queueThresholdMs / 2, q < queueThresholdMs / 2 {
            queueJitterMs += (min(abs(q - previous), 50) - queueJitterMs) / 16
        }
        lastQueueSample = q
        queueDelayMs = floor
        queueOverThreshold = floor > queueThresholdMs ? queueOverThreshold + 1 : 0
        baseDelayStep(floor: floor, base: base, group: g, second: second)
    }

    /// A queue of ours drains once the rate is cut. A floor that holds still over the
    /// threshold for a second, through a cut and without loss, is the path's own delay
    /// stepping up (a route change, a handover): it becomes the new base, and the capacity
    /// learnt on the old path is forgotten. Without this the ten-second floor reads the
    /// step as a standing queue and keeps the rate cut for ten seconds. A full queue drops
    /// packets, so a queue pinned at its limit is not taken for a step.
    private mutating func baseDelayStep(floor: Double, base: Double, group g: Group, second: Int64) {
        guard floor > queueThresholdMs, recentLoss < 0.02 else { stepWatch = nil; return }
        guard let w = stepWatch, abs(floor - w.floor) <= max(8, 2 * queueJitterMs, 0.15 * w.floor) else {
            stepWatch = (g.firstArrival, floor, overuseEvents)
            return
        }
        guard g.firstArrival - w.since >= 1_000_000, overuseEvents > w.overuses else { return }
        baseBuckets.removeAll(keepingCapacity: true)
        baseBuckets.append((second, base + floor))
        recentQueue.removeAll(keepingCapacity: true)
        queueDelayMs = 0
        queueOverThreshold = 0
        lastQueueSample = nil
        capacityKbps = nil
        stepWatch = nil
        baseDelaySteps += 1
    }

    /// How often the path's own delay was found to have stepped up (``baseDelayStep``).
    public private(set) var baseDelaySteps = 0
    /// A floor over the threshold being watched: since when (arrival µs), its level, and
    /// the overuse count then (a cut must have followed for the floor to tell anything).
    private var stepWatch: (since: Int64, floor: Double, overuses: Int)?

    /// Queueing past this reads as overuse: 40 ms plus three times the delay jitter.
    public var queueThresholdMs: Double { min(40 + 3 * queueJitterMs, 200) }
    /// The standing queue at the last group, ms.
    public private(set) var queueDelayMs: Double?
    /// The longest queue a packet of the last feedback message met, ms (its one-way delay
    /// over the path's base): how close a shallow buffer is to overflowing, now.
    public private(set) var peakQueueMs: Double?
    private var queueJitterMs = 0.0
    /// Overuse events by what showed them: the delay trend, a standing queue over the
    /// threshold, loss with a queue (diagnostics).
    public private(set) var overusesBy = (trend: 0, queue: 0, loss: 0)
    /// The smallest queue a group met in the last 50 ms.
    private var shortFloorMs = 0.0
    /// The queue every packet must meet before a rising trend counts as overuse (more
    /// on a jittery path: one and a half times the jitter).
    static let minimumQueueForTrendMs = 5.0
    private var recentLoss = 0.0
    private var queueLoss = false
    private var queueOverThreshold = 0
    private var baseBuckets: [(second: Int64, minimum: Double)] = []
    private var recentQueue: [(arrival: Int64, delay: Double)] = []
    private(set) var lastQueueSample: Double?

    /// Least-squares slope of y over x.
    static func slope(_ points: [(x: Double, y: Double)]) -> Double? {
        let n = Double(points.count)
        let mx = points.reduce(0) { $0 + $1.x } / n
        let my = points.reduce(0) { $0 + $1.y } / n
        var num = 0.0, den = 0.0
        for p in points { num += (p.x - mx) * (p.y - my); den += (p.x - mx) * (p.x - mx) }
        return den == 0 ? nil : num / den
    }

    private mutating func detect(sendDeltaMs: Double, nowMs: Double) {
        guard numDeltas >= 2 else { usage = .normal; return }
        let modified = Double(min(numDeltas, 60)) * trend * 4
        if modified > threshold {
            overuseTimeMs = overuseTimeMs < 0 ? sendDeltaMs / 2 : overuseTimeMs + sendDeltaMs
            overuseCounter += 1
            // A rising trend is overuse when packets queue: every packet of the last 50 ms
            // waited, longer than the path's jitter explains. Jitter alone (a radio link, a relay that reorders) tilts the trend
            // too, but leaves some packet on time; cutting for it starves the call.
            let queued = shortFloorMs > max(Self.minimumQueueForTrendMs, 1.5 * queueJitterMs)
            if overuseTimeMs > 10 && overuseCounter > 1 && trend >= previousTrend && queued {
                overuseTimeMs = 0
                overuseCounter = 0
                if usage != .overusing { overuseEvents += 1; overusesBy.trend += 1 }
                usage = .overusing
            }
        } else if modified < -threshold {
            overuseTimeMs = -1; overuseCounter = 0
            usage = .underusing
        } else {
            overuseTimeMs = -1; overuseCounter = 0
            usage = .normal
        }
        if (queueOverThreshold >= 2 || queueLoss) && usage != .overusing {
            overuseEvents += 1
            if queueLoss { overusesBy.loss += 1 } else { overusesBy.queue += 1 }
            usage = .overusing
        }
        previousTrend = trend
        // The threshold follows the trend slowly, so a path with steady jitter (a WLAN)
        // does not read as overuse, while a real queue still crosses it (GCC §5.4).
        let last = lastThresholdUpdateMs ?? nowMs
        lastThresholdUpdateMs = nowMs
        if abs(modified) > threshold + 15 { return }
        let k = abs(modified) < threshold ? 0.039 : 0.0087
        threshold += k * (abs(modified) - threshold) * min(max(nowMs - last, 0), 100)
        threshold = min(max(threshold, 6), 600)
    }

    // MARK: Sent rate

    /// What we sent (reported packets, lost or not, by send time) over the last 300 ms:
    /// under half the estimate means the sender is application-limited.
    public private(set) var sentBps: Double?
    private var sent: [(send: Int64, size: Int)] = []
    private var sentStart = 0

    private mutating func recordSent(send: Int64, size: Int) {
        if sent.count < Self.maxAcked {
            if sent.isEmpty { sent.reserveCapacity(Self.maxAcked) }
            sent.append((send, size))
        } else {
            sent[sentStart] = (send, size)
            sentStart = (sentStart + 1) % Self.maxAcked
        }
    }

    private mutating func updateSentRate() {
        guard let latest = sent.max(by: { $0.send < $1.send })?.send else { return }
        var bytes = 0, earliest = latest
        for s in sent where s.send > latest - Self.ackedWindowMicros {
            bytes += s.size
            earliest = min(earliest, s.send)
        }
        let span = latest - earliest
        sentBps = span >= 100_000 ? Double(bytes) * 8 / (Double(span) / 1e6) : nil
    }

    // MARK: Acknowledged rate

    private mutating func recordAcked(arrival: Int64, size: Int) {
        if acked.count < Self.maxAcked {
            acked.append((arrival, size))
        } else {
            acked[ackedStart] = (arrival, size)
            ackedStart = (ackedStart + 1) % Self.maxAcked
        }
    }

    private mutating func updateAckedRate() {
        guard let latest = acked.max(by: { $0.arrival < $1.arrival })?.arrival else { return }
        // One pass for both windows: the last 300 ms, and the last 120 ms alone (right
        // after a drop the longer window still holds arrivals from before it, and a cut
        // from that rate stays above the new link).
        var bytes = 0, recentBytes = 0
        var earliest = latest, recentEarliest = latest
        for a in acked where a.arrival > latest - Self.ackedWindowMicros {
            bytes += a.size
            earliest = min(earliest, a.arrival)
            if a.arrival > latest - 120_000 {
                recentBytes += a.size
                recentEarliest = min(recentEarliest, a.arrival)
            }
        }
        // Under 100 ms of arrivals says little about a rate.
        let span = max(latest - earliest, 0)
        guard span >= 100_000 else { return }
        ackedBps = Double(bytes) * 8 / (Double(span) / 1e6)
        let recentSpan = latest - recentEarliest
        recentAckedBps = recentSpan >= 80_000 ? Double(recentBytes) * 8 / (Double(recentSpan) / 1e6) : nil
    }
    private var recentAckedBps: Double?

    // MARK: AIMD

    private mutating func updateRate(nowMs: Double) {
        let dt = min(max(nowMs - (lastRateUpdateMs ?? nowMs), 0), 1000) / 1000
        lastRateUpdateMs = nowMs
        switch usage {
        case .overusing:
            // One cut per response time: feedback in the next 200 ms still shows the queue
            // the last cut is draining.
            if lastDecreaseMs.map({ nowMs - $0 >= 200 }) ?? true { state = .decrease }
        case .underusing: state = .hold
        case .normal: if state == .hold { state = .increase }
        }
        switch state {
        case .hold:
            break
        case .increase:
            if let a = ackedBps, let c = capacityKbps, a / 1000 > c + 3 * (capacityDeviation * c).squareRoot() {
                // The path got faster than what we learned: forget it, climb fast.
                capacityKbps = nil
            }
            var grown = estimateBps
            if capacityKbps != nil {
                // Near the capacity learnt at the last overuse: a packet more per response time.
                let responseSeconds = 0.2
                grown += max(1000, 1200 * 8 / responseSeconds * dt)
            } else {
                grown *= pow(multiplicativeGrowthPerSecond, dt)
            }
            // Not far above what actually gets through while the encoder fills the
            // estimate. An encoder well under it (a still picture) proves nothing either
            // way: then growth goes on, and the delay signal reins in a later burst.
            if let a = ackedBps, a > 0.5 * estimateBps {
                grown = max(estimateBps, min(grown, 1.5 * a + 10_000))
            }
            estimateBps = grown
        case .decrease:
            if let sent = sentBps, sent < 0.5 * estimateBps {
                // Application-limited (video paused, a still picture, audio alone): we
                // *sent* under half the estimate, so what got through says nothing of the
                // path's capacity, as in the increase branch. A cut to 0.85× of it would take
                // the estimate to the floor, and video would come back at the bottom of the
                // ladder. Cut by 15 % instead. (A path that collapsed is told apart by what
                // was sent: a sender at full rate whose packets are lost is not limited.)
                estimateBps *= 0.85
            } else if let long = ackedBps {
                let a = min(long, recentAckedBps ?? long)
                let akbps = a / 1000
                // Below what gets through by 15 % (GCC), and further by the standing queue,
                // so that it drains in about a second instead of delaying every frame.
                let queueSeconds = max(0, (queueDelayMs ?? 0) - queueThresholdMs / 2) / 1000
                estimateBps = min(estimateBps, a * max(0.5, 0.85 - queueSeconds))
                // Learn the capacity where the queue started (an exponential average); a
                // rate far under what was learnt means the path changed: start again.
                if let c = capacityKbps, akbps < c - 3 * (capacityDeviation * c).squareRoot() {
                    capacityKbps = akbps
                    capacityDeviation = 0.4
                } else if let c = capacityKbps {
                    let alpha = 0.05
                    let updated = (1 - alpha) * c + alpha * akbps
                    let error = updated - akbps
                    capacityDeviation = min(max((1 - alpha) * capacityDeviation + alpha * error * error / max(updated, 1), 0.4), 2.5)
                    capacityKbps = updated
                } else {
                    capacityKbps = akbps
                }
            } else {
                estimateBps *= 0.85
            }
            state = .hold
            lastDecreaseMs = nowMs
        }
        estimateBps = min(max(estimateBps, minimumBps), maximumBps)
    }
}

#if canImport(Glibc)
import Glibc
#endif
