import NetworkCore

/// Finds headroom fast, as GCC's prober does: a short cluster of padding packets sent at
/// twice the estimate, whose arrival rate (from transport-wide feedback) says whether the
/// path takes more. Without it, a cap that lifts is found only by growing into it a few
/// percent a second. I/O-free: the sender asks what to send, feedback says how it went.
public struct ProbeController: Sendable {
    /// A cluster to send: `packets` of `packetSize` bytes, one every `interval`.
    public struct Cluster: Sendable, Equatable {
        public var id: Int
        public var rateBps: Double
        public var packets: Int
        public var packetSize: Int
        public var interval: Duration
    }

    /// Padding-only RTP packets carry at most 255 bytes of padding.
    public static let packetSize = 255
    /// A cluster lasts about this long at its rate (enough packets for a rate).
    static let clusterDuration = 0.015
    /// How long to wait between probes while the estimate holds steady: ``calmInterval``,
    /// or ``followUpInterval`` after a probe's lift held (the owner sets it).
    public var interval: Duration = ProbeController.calmInterval
    public static let calmInterval: Duration = .seconds(2)
    public static let followUpInterval: Duration = .milliseconds(500)

    private var nextID = 0
    private var lastProbe: Instant?
    private var pending: (cluster: Cluster, sentAt: Instant)?
    private var results: [(send: Int64, arrival: Int64, size: Int)] = []
    /// Probes sent, and those that found more room than the estimate.
    public private(set) var probesSent = 0
    public private(set) var probesSucceeded = 0

    public init() {}

    /// A cluster when one is due: the estimate has held for a while (no overuse, a calm
    /// queue) and is under the maximum.
    public mutating func cluster(now: Instant, estimateBps: Double, maximumBps: Double, calm: Bool) -> Cluster? {
        guard calm, pending == nil, estimateBps < maximumBps * 0.95 else { return nil }
        if let last = lastProbe, now - last < interval { return nil }
        let rate = min(estimateBps * 2, maximumBps)
        let packets = min(max(Int(rate * ProbeController.clusterDuration / 8) / ProbeController.packetSize, 6), 60)
        let spacing = Double(ProbeController.packetSize * 8) / rate
        let c = Cluster(id: nextID, rateBps: rate, packets: packets, packetSize: ProbeController.packetSize,
                        interval: .nanoseconds(Int64(spacing * 1e9)))
        nextID = (nextID + 1) % 1000
        lastProbe = now
        pending = (c, now)
        results.removeAll(keepingCapacity: true)
        probesSent += 1
        return c
    }

    /// Feedback results; returns the rate the probe proved when it proved one.
    public mutating func feedback(_ rs: [SendHistory.Result], now: Instant) -> Double? {
        guard let (c, sentAt) = pending else { return nil }
        for r in rs where r.probe == c.id {
            if let a = r.arrivalMicros, results.count < 64 { results.append((r.sendMicros, a, r.size)) }
        }
        // Most of the cluster arrived: measure. A second without: it is lost, give up.
        if results.count * 5 >= c.packets * 4 {
            pending = nil
            let bySend = results.sorted { $0.send < $1.send }
            let byArrival = results.sorted { $0.arrival < $1.arrival }
            let sendSpan = Double(bySend.last!.send - bySend.first!.send) / 1e6
            let arrivalSpan = Double(byArrival.last!.arrival - byArrival.first!.arrival) / 1e6
            guard sendSpan > 0, arrivalSpan > 0 else { return nil }
            let sendRate = Double(bySend.dropLast().reduce(0) { $0 + $1.size } * 8) / sendSpan
            let receiveRate = Double(byArrival.dropFirst().reduce(0) { $0 + $1.size } * 8) / arrivalSpan
            let proved = min(sendRate, receiveRate)
            if receiveRate >= 0.9 * sendRate { probesSucceeded += 1 }
            return proved
        } else if now - sentAt > .seconds(1) {
            pending = nil
        }
        return nil
    }
}
