import NetworkCore

/// Per-source token buckets for the signalling port: a flood from one address gets 429
/// after its burst, costs almost nothing per request, and cannot fill the journal.
///
/// The table is bounded: at ``maxSources`` entries, sources idle for a minute are
/// forgotten, and if that is not enough the least recently seen half goes (a flood of
/// spoofed-looking sources costs memory once, never more).
public final class RateLimiter: @unchecked Sendable {
    struct Bucket { var tokens: Double; var last: Instant; var logged: Int; var logWindow: Instant }
    private let state = Locked([String: Bucket]())
    /// Sustained requests per second and burst size, per source address.
    public let rate: Double
    public let burst: Double
    public let maxSources: Int

    public init(rate: Double = 20, burst: Double = 40, maxSources: Int = 1024) {
        self.rate = rate
        self.burst = burst
        self.maxSources = maxSources
    }

    /// How many sources are remembered (for tests).
    public var sourceCount: Int { state.withLock { $0.count } }

    private func bucket(_ buckets: inout [String: Bucket], _ source: String, _ now: Instant) -> Bucket {
        if let b = buckets[source] { return b }
        if buckets.count >= maxSources {
            buckets = buckets.filter { now - $0.value.last < .seconds(60) }
            if buckets.count >= maxSources {
                let keep = buckets.sorted { $0.value.last > $1.value.last }.prefix(maxSources / 2)
                buckets = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
            }
        }
        return Bucket(tokens: burst, last: now, logged: 0, logWindow: now)
    }

    /// Takes `cost` tokens for `source`; false means refuse (429).
    public func allow(source: String, cost: Double = 1, now: Instant = Instant.now()) -> Bool {
        state.withLock { buckets in
            var b = bucket(&buckets, source, now)
            b.tokens = min(burst, b.tokens + (now - b.last).seconds * rate)
            b.last = now
            let ok = b.tokens + 1e-9 >= cost  // sums of 0.1 drift below whole numbers
            if ok { b.tokens -= cost }
            buckets[source] = b
            return ok
        }
    }

    /// At most 5 log lines a minute per source.
    public func shouldLog(source: String, now: Instant = Instant.now()) -> Bool {
        state.withLock { buckets in
            var b = bucket(&buckets, source, now)
            if now - b.logWindow > .seconds(60) { b.logWindow = now; b.logged = 0 }
            b.logged += 1
            buckets[source] = b
            return b.logged <= 5
        }
    }
}
