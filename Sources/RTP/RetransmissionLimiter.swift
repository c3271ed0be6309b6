import NetworkCore

/// Decides which NACKed packets (RFC 4585) may be sent again, so a peer's NACKs can
/// neither make us resend one packet over and over nor multiply our sending rate:
///
/// - one sequence number is not resent again within ``minInterval`` (about one round
///   trip: a NACK repeated before our resend could have arrived is answered already);
/// - resends draw on a byte budget refilled at ``share`` of the current sending rate, and
///   at least ``floorBytesPerSecond`` (a start-up or audio-only rate must still repair a
///   loss), holding at most ``burst`` of it.
///
/// Fixed size; no I/O: time and the sending rate come in as arguments.
public struct RetransmissionLimiter: Sendable {
    public enum Refusal: Sendable, Equatable {
        /// The same sequence number was resent less than ``minInterval`` ago.
        case duplicate
        /// The budget for resends is spent.
        case budget
    }

    public var minInterval: Duration
    public var share: Double
    public var floorBytesPerSecond: Double
    public var burst: Duration
    /// Resends refused, by reason.
    public private(set) var refusedDuplicates: UInt64 = 0
    public private(set) var refusedOverBudget: UInt64 = 0

    private var lastResent: [(seq: UInt16, at: Instant?)]
    private let mask: Int
    private var tokens: Double
    private var refilledAt: Instant?

    /// - Parameters:
    ///   - minInterval: no second resend of one sequence number within this.
    ///   - share: resends may use this fraction of the sending rate.
    ///   - floorBytesPerSecond: the budget never refills slower than this.
    ///   - burst: the budget holds at most this long's refill.
    ///   - slots: sequence numbers remembered (a power of two; the sender's ring size).
    public init(minInterval: Duration = .milliseconds(100), share: Double = 0.5, floorBytesPerSecond: Double = 40_000,
                burst: Duration = .milliseconds(250), slots: Int = 512) {
        self.minInterval = minInterval
        self.share = share
        self.floorBytesPerSecond = floorBytesPerSecond
        self.burst = burst
        var n = 1
        while n < max(1, slots) { n <<= 1 }
        lastResent = Array(repeating: (0, nil), count: n)
        mask = n - 1
        tokens = floorBytesPerSecond * burst.seconds
    }

    /// The round trip measured from RTCP: a NACK repeated after a full round trip asks
    /// for a resend that was lost, not one still on its way, so it is answered. (A fixed
    /// 100 ms would refuse every second ask of a receiver that repeats once per 60 ms
    /// round trip, and a loss twice over would freeze the picture.)
    public mutating func setRoundTrip(_ rtt: Duration) {
        minInterval = min(max(rtt * 0.9, .milliseconds(10)), .milliseconds(500))
    }

    /// Whether `bytes` for `sequence` may go out again now, given the current sending rate
    /// (bytes/s); nil means yes (and the resend is accounted), else why not.
    public mutating func allow(sequence: UInt16, bytes: Int, sendingBytesPerSecond: Double, now: Instant) -> Refusal? {
        let i = Int(sequence) & mask
        if lastResent[i].seq == sequence, let at = lastResent[i].at, now - at < minInterval {
            refusedDuplicates += 1
            return .duplicate
        }
        let rate = max(floorBytesPerSecond, share * max(0, sendingBytesPerSecond))
        let capacity = max(rate * burst.seconds, Double(bytes))
        if let last = refilledAt {
            tokens = min(capacity, tokens + rate * (now - last).seconds)
        } else {
            // The first resend of a call: the budget had all the time before to fill.
            // (Starting from the floor's burst refused most resends of the first drop.)
            tokens = capacity
        }
        refilledAt = now
        guard tokens >= Double(bytes) else {
            refusedOverBudget += 1
            return .budget
        }
        tokens -= Double(bytes)
        lastResent[i] = (sequence, now)
        return nil
    }
}
