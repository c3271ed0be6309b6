import NetworkCore

/// The resolver's bookkeeping for `.local` names, with no I/O: which names are being
/// asked about (bounded, each with a deadline), when to ask again, and a small cache of
/// the answers to our own questions (with their TTL). Answers for names nobody asked
/// about are not kept: the cache cannot be filled from the network.
///
/// `Waiter` is what the owner needs to tell an asker the result (a callback).
public struct MDNSResolverTable<Waiter> {
    /// Names being resolved at once, at most; more are refused.
    public var maxPending = 32
    /// Askers waiting for one name, at most.
    public var maxWaitersPerName = 8
    /// Answers kept, at most; the one expiring first makes room.
    public var maxCached = 64
    /// A cached answer lives its record's TTL, but no longer than this.
    public var maxTTL: Duration = .seconds(120)
    /// The waits between queries for one name (RFC 6762 §5.2: a first query is repeated):
    /// one query, then one more after each wait, then none until the deadline.
    public var queryIntervals: [Duration] = [.milliseconds(50), .milliseconds(250)]

    struct Pending {
        var waiters: [Waiter]
        var deadline: Instant
        var queriesSent: Int
        var nextQuery: Instant?
    }

    private var pending: [String: Pending] = [:]
    private var cache: [String: (ip: [UInt8], expires: Instant)] = [:]
    /// Answers ignored because nobody asked for the name.
    public private(set) var unsolicitedAnswers: UInt64 = 0
    /// Resolutions refused because the table was full.
    public private(set) var refused: UInt64 = 0

    public init() {}

    public enum AskResult {
        /// Known already: the address.
        case cached([UInt8])
        /// Waiting; `queryNow` when a query for the name should go out now (the first asker).
        case waiting(queryNow: Bool)
        /// Not taken; the reason names the limit.
        case refused(String)
    }

    /// Someone wants `name` (lower case) resolved by `now + timeout`.
    public mutating func ask(_ name: String, waiter: Waiter, timeout: Duration, now: Instant) -> AskResult {
        if let c = cache[name] {
            if c.expires > now { return .cached(c.ip) }
            cache[name] = nil
        }
        if var p = pending[name] {
            guard p.waiters.count < maxWaitersPerName else {
                refused += 1
                return .refused("\(maxWaitersPerName) lookups of this name wait already")
            }
            p.waiters.append(waiter)
            p.deadline = max(p.deadline, now + timeout)
            pending[name] = p
            return .waiting(queryNow: false)
        }
        guard pending.count < maxPending else {
            refused += 1
            return .refused("\(maxPending) names are being resolved already")
        }
        pending[name] = Pending(waiters: [waiter], deadline: now + timeout, queriesSent: 1, nextQuery: now + (queryIntervals.first ?? timeout))
        return .waiting(queryNow: true)
    }

    /// An answer arrived: if we asked about `name`, caches it and returns the waiters to
    /// tell; nil (and nothing kept) when nobody asked. A TTL of 0 withdraws the name.
    public mutating func answer(_ name: String, ip: [UInt8], ttl: UInt32, now: Instant) -> [Waiter]? {
        if ttl == 0 {
            cache[name] = nil
            return pending[name] == nil ? nil : []
        }
        guard let p = pending.removeValue(forKey: name) else {
            // A refresh of a name we hold is fine; anything else is not ours to keep.
            if cache[name] != nil {
                cache[name] = (ip, now + min(maxTTL, .seconds(Int64(ttl))))
                return []
            }
            unsolicitedAnswers += 1
            return nil
        }
        if cache[name] == nil && cache.count >= maxCached {
            // Expired first, else the one expiring soonest.
            cache = cache.filter { $0.value.expires > now }
            if cache.count >= maxCached, let victim = cache.min(by: { $0.value.expires < $1.value.expires })?.key { cache[victim] = nil }
        }
        cache[name] = (ip, now + min(maxTTL, .seconds(Int64(ttl))))
        return p.waiters
    }

    /// Names to query again now, and the waiters whose names timed out (tell them nil).
    public mutating func poll(now: Instant) -> (queries: [String], timedOut: [Waiter]) {
        var queries: [String] = []
        var timedOut: [Waiter] = []
        for (name, var p) in pending {
            if p.deadline <= now {
                timedOut += p.waiters
                pending[name] = nil
                continue
            }
            if let q = p.nextQuery, q <= now {
                queries.append(name)
                p.queriesSent += 1
                p.nextQuery = p.queriesSent <= queryIntervals.count ? now + queryIntervals[p.queriesSent - 1] : nil
                pending[name] = p
            }
        }
        cache = cache.filter { $0.value.expires > now }
        return (queries, timedOut)
    }

    /// When ``poll(now:)`` next has work (nil: nothing pending).
    public var nextDeadline: Instant? {
        var d: Instant? = nil
        for p in pending.values {
            for t in [p.deadline, p.nextQuery].compactMap({ $0 }) { d = d.map { min($0, t) } ?? t }
        }
        return d
    }

    public var pendingCount: Int { pending.count }
    public var cachedCount: Int { cache.count }
    public func cached(_ name: String, now: Instant) -> [UInt8]? {
        cache[name].flatMap { $0.expires > now ? $0.ip : nil }
    }
}
