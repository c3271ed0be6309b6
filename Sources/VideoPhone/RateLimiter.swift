import NetworkCore

/// Per-source token buckets for the signalling port: a flood from one address gets 429
/// after its burst, costs almost nothing per request, and cannot fill the journal.
public final class RateLimiter: @unchecked Sendable {
    struct Bucket { var tokens: Double; var last: Instant; var logged: Int; var logWindow: Instant }
    private let state = Locked([String: Bucket]())
    /// Sustained requests per second and burst size, per source address.
    public let rate: Double
    public let burst: Double

    public init(rate: Double = 20, burst: Double = 40) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes one token for `source`; false means refuse (429).
    public func allow(source: String, now: Instant = Instant.now()) -> Bool {
        state.withLock { buckets in
            if buckets.count > 4096 { buckets = buckets.filter { now - $0.value.last < .seconds(60) } }
            var b = buckets[source] ?? Bucket(tokens: burst, last: now, logged: 0, logWindow: now)
            b.tokens = min(burst, b.tokens + (now - b.last).seconds * rate)
            b.last = now
            let ok = b.tokens >= 1
            if ok { b.tokens -= 1 }
            buckets[source] = b
            return ok
        }
    }

    /// At most 5 log lines a minute per source.
    public func shouldLog(source: String, now: Instant = Instant.now()) -> Bool {
        state.withLock { buckets in
            var b = buckets[source] ?? Bucket(tokens: burst, last: now, logged: 0, logWindow: now)
            if now - b.logWindow > .seconds(60) { b.logWindow = now; b.logged = 0 }
            b.logged += 1
            buckets[source] = b
            return b.logged <= 5
        }
    }
}
