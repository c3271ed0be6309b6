import NetworkCore

extension SeededRandomGenerator {
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// One direction of a path between two call cores, on virtual time: a bottleneck with a
/// rate and a drop-tail queue, then propagation delay with jitter (which reorders), random
/// loss, loss in bursts, and outages. Times are nanoseconds of the test's clock.
struct SimulatedLink {
    struct Impairment {
        /// One-way delay and its uniform jitter (±).
        var delayMs = 20.0
        var jitterMs = 0.0
        /// Chance that a datagram is lost on its own.
        var randomLoss = 0.0
        /// Chance that a loss burst starts at a datagram, and how many datagrams it takes.
        var burstStart = 0.0
        var burstLength = 5
        /// The bottleneck's rate (nil: no cap) and how long a queue it holds.
        var rateBps: Double?
        var queueMs = 100.0
        /// A time window in which every datagram is lost.
        var outage: ClosedRange<UInt64>?
    }

    var impairment = Impairment()
    var random: SeededRandomGenerator
    /// When the bottleneck's queue is empty again.
    private var busyUntil: UInt64 = 0
    private var burstLeft = 0
    private(set) var sent = 0
    private(set) var lost = 0
    private(set) var bytesDelivered = 0

    init(seed: UInt64) { random = SeededRandomGenerator(seed: seed) }

    /// When a datagram of `bytes` sent at `now` arrives, or nil when it is lost.
    private(set) var sentBytes = 0
    mutating func arrival(bytes: Int, now: UInt64) -> UInt64? {
        sent += 1
        sentBytes += bytes
        var leaves = now
        if let rate = impairment.rateBps {
            let start = max(now, busyUntil)
            // Drop-tail: the queue ahead would take longer than it holds.
            if Double(start - now) / 1e6 > impairment.queueMs { lost += 1; return nil }
            busyUntil = start + UInt64(Double(bytes * 8) / rate * 1e9)
            leaves = busyUntil
        }
        if let o = impairment.outage, o.contains(now) { lost += 1; return nil }
        if burstLeft > 0 { burstLeft -= 1; lost += 1; return nil }
        if impairment.burstStart > 0, random.unit() < impairment.burstStart {
            burstLeft = impairment.burstLength - 1
            lost += 1
            return nil
        }
        if impairment.randomLoss > 0, random.unit() < impairment.randomLoss { lost += 1; return nil }
        let jitter = impairment.jitterMs > 0 ? (random.unit() * 2 - 1) * impairment.jitterMs : 0
        bytesDelivered += bytes
        return leaves + UInt64(max(0, impairment.delayMs + jitter) * 1e6)
    }
}

/// Datagrams in flight between endpoints, delivered in order of arrival.
struct InFlight {
    struct Datagram {
        var at: UInt64
        var order: Int
        var bytes: [UInt8]
        var from: TransportAddress
        var to: TransportAddress
    }
    private var queue: [Datagram] = []
    private var order = 0

    mutating func add(_ bytes: [UInt8], from: TransportAddress, to: TransportAddress, at: UInt64) {
        order += 1
        let d = Datagram(at: at, order: order, bytes: bytes, from: from, to: to)
        // Kept sorted by arrival (then by send order): a binary search for the place.
        var lo = 0, hi = queue.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if (queue[mid].at, queue[mid].order) <= (d.at, d.order) { lo = mid + 1 } else { hi = mid }
        }
        queue.insert(d, at: lo)
    }

    var nextArrival: UInt64? { queue.first?.at }

    mutating func takeDue(_ now: UInt64) -> Datagram? {
        guard let first = queue.first, first.at <= now else { return nil }
        return queue.removeFirst()
    }
}
