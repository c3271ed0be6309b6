import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// The call-setup timeline: when each stage finished, on the monotonic clock.
public struct SetupTimeline: Sendable {
    public var created: Instant
    public var remoteDescription: Instant?
    public var iceConnected: Instant?
    public var dtlsConnected: Instant?
    public var firstMediaSent: Instant?
    /// The first encoded video frame the sender took (keys and a path ready): where the
    /// camera's and encoder's part ends and pacing's begins.
    public var firstVideoFrameQueued: Instant?
    /// The first video packet from the peer (the rest of its first frame is pacing and
    /// the path).
    public var firstVideoPacketReceived: Instant?
    public var firstVideoFrameReceived: Instant?
    public var firstAudioReceived: Instant?

    /// Milliseconds from `created` to each stage (nil when not reached).
    public func milliseconds(_ stage: Instant?) -> Double? { stage.map { ($0 - created).milliseconds } }
}

/// W3C webrtc-stats `inbound-rtp` fields this device reports.
public struct InboundRTPStats: Sendable, Codable {
    public var kind: String
    public var ssrc: UInt32
    public var packetsReceived: UInt64 = 0
    public var packetsLost: Int64 = 0
    public var jitter: Double = 0
    public var bytesReceived: UInt64 = 0
    public var framesReceived: UInt64 = 0
    public var framesDropped: UInt64 = 0
    public var keyFramesReceived: UInt64 = 0
    public var nackCount: UInt64 = 0
    public var pliCount: UInt64 = 0
    public var framesPerSecond: Double = 0
    public var bitrate: Double = 0
    /// Retransmissions that arrived on the RTX stream (RFC 4588).
    public var retransmittedPacketsReceived: UInt64 = 0
    /// Freezes: gaps of more than `FreezeCounter.threshold` between complete frames.
    public var freezeCount: UInt64 = 0
    /// Their summed length and the longest one, in seconds.
    public var totalFreezesDuration: Double = 0
    public var longestFreezeDuration: Double = 0

    /// Capture (the sender's abs-capture-time) to complete frame here, over the last 256
    /// frames that carried one, ms: meaningful where the two clocks agree (NTP-synced
    /// devices, or both ends on one machine as in the test beds).
    public var endToEndDelayP50Ms: Double?
    public var endToEndDelayP95Ms: Double?

    public init(kind: String, ssrc: UInt32) { self.kind = kind; self.ssrc = ssrc }
}

/// The last ``capacity`` values of a delay, for its median and 95th percentile. A fixed
/// ring with a sorted copy kept beside it (one binary search and a short move per value): no
/// allocation per value, and none for the percentiles, which the metrics tick reads four
/// times a second.
public struct DelayWindow: Sendable {
    public static let capacity = 256
    private var values = [Double](repeating: 0, count: DelayWindow.capacity)
    /// The ring's values in ascending order; the first `count` are valid.
    private var sorted = [Double](repeating: 0, count: DelayWindow.capacity)
    private var count = 0
    private var next = 0

    public init() {}

    /// Adds one delay; NaN and infinities are not delays and are left out (they would
    /// have no place in the sorted copy).
    public mutating func add(_ v: Double) {
        guard v.isFinite else { return }
        if count == Self.capacity {
            // The oldest value rolls out of the sorted copy too.
            let i = Self.firstIndex(notBelow: values[next], in: sorted, count: count)
            sorted.withUnsafeMutableBufferPointer { b in
                for j in i..<(count - 1) { b[j] = b[j + 1] }
            }
            count -= 1
        }
        values[next] = v
        next = (next + 1) % Self.capacity
        let i = Self.firstIndex(notBelow: v, in: sorted, count: count)
        sorted.withUnsafeMutableBufferPointer { b in
            var j = count
            while j > i { b[j] = b[j - 1]; j -= 1 }
            b[i] = v
        }
        count += 1
    }

    /// (p50, p95), nil before the first value.
    public func percentiles() -> (Double, Double)? {
        guard count > 0 else { return nil }
        return (sorted[(count - 1) / 2], sorted[min(count - 1, Int((Double(count) * 0.95).rounded(.down)))])
    }

    /// The first index in `a[..<count]` (ascending) whose value is not below `v`.
    private static func firstIndex(notBelow v: Double, in a: [Double], count: Int) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// The last ``capacity`` values of a latency (for status pages and metrics) and how many were
/// ever added: a fixed ring made once, so adding never allocates and a device that runs for a
/// year holds the same few kilobytes. Read it in place, under its owner's lock: a copy taken
/// out shares the storage, and the next ``add(_:)`` would have to copy it.
public struct RecentSamples: Sendable {
    private var storage: [Double]
    private var next = 0
    /// Values ever added; the ring holds the last `min(total, capacity)` of them.
    public private(set) var total: UInt64 = 0

    /// A ring of `capacity` values (at least one), all its storage made now.
    public init(capacity: Int) {
        storage = [Double](repeating: 0, count: max(1, capacity))
    }

    /// How many values the ring holds at most.
    public var capacity: Int { storage.count }
    /// How many values it holds now.
    public var count: Int { Int(min(total, UInt64(storage.count))) }

    /// Adds a value in place of the oldest once full.
    public mutating func add(_ v: Double) {
        storage[next] = v
        next = next + 1 == storage.count ? 0 : next + 1
        total &+= 1
    }

    /// The values held, oldest first (a new array: for status pages, not per packet).
    public var values: [Double] {
        var out = [Double]()
        out.reserveCapacity(count)
        _ = forEach(since: 0) { out.append($0) }
        return out
    }

    /// Calls `body` with each value added after the first `seen` (a ``total`` read before)
    /// that the ring still holds, oldest first, and returns ``total``: the metrics tick takes
    /// every new value once, however many were dropped between two looks.
    @discardableResult
    public func forEach(since seen: UInt64, _ body: (Double) -> Void) -> UInt64 {
        let fresh = Int(min(total - min(seen, total), UInt64(count)))
        var i = next - fresh
        if i < 0 { i += storage.count }
        for _ in 0..<fresh {
            body(storage[i])
            i = i + 1 == storage.count ? 0 : i + 1
        }
        return total
    }
}

/// Counts the receiver's freezes from the times frames complete. A gap of more than
/// 200 ms is a freeze (the impairment bed's definition; W3C's max(3 × mean, mean + 150 ms)
/// comes to 183 ms at 30 fps, so Chromium's counters are comparable).
public struct FreezeCounter: Sendable {
    public static let threshold: Duration = .milliseconds(200)
    private var last: Instant?

    public init() {}

    /// A frame completed at `now`: adds the gap before it to `stats` when it was a freeze.
    public mutating func frameCompleted(at now: Instant, into stats: inout InboundRTPStats) {
        defer { last = now }
        guard let last, now - last > Self.threshold else { return }
        let seconds = (now - last).milliseconds / 1000
        stats.freezeCount += 1
        stats.totalFreezesDuration += seconds
        stats.longestFreezeDuration = max(stats.longestFreezeDuration, seconds)
    }
}

/// W3C webrtc-stats `outbound-rtp` fields this device reports.
public struct OutboundRTPStats: Sendable, Codable {
    public var kind: String
    public var ssrc: UInt32
    public var packetsSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var framesEncoded: UInt64 = 0
    public var keyFramesEncoded: UInt64 = 0
    public var retransmittedPacketsSent: UInt64 = 0
    /// NACKed packets not resent: asked again within a round trip, or over the resend budget.
    public var retransmissionsRefused: UInt64 = 0
    public var nackCount: UInt64 = 0
    public var pliCount: UInt64 = 0
    public var firCount: UInt64 = 0
    public var frameWidth: Int = 0
    public var frameHeight: Int = 0
    public var framesPerSecond: Double = 0
    public var bitrate: Double = 0
    /// Frames (audio packets) the transport thread fell too far behind to take.
    public var framesDroppedBeforeSend: UInt64 = 0
    /// The pacer's rate (bit/s) and what waits in its queue (bytes).
    public var pacingRate: Double = 0
    public var pacerQueueBytes: Int = 0
    /// Bandwidth probes sent (padding-only clusters) and their padding bytes.
    public var probeClusters: UInt64 = 0
    public var paddingBytesSent: UInt64 = 0
}

/// W3C `candidate-pair` (the selected one).
public struct CandidatePairStats: Sendable, Codable {
    public var localCandidateType: String = ""
    public var remoteCandidateType: String = ""
    public var localAddress: String = ""
    public var remoteAddress: String = ""
    public var currentRoundTripTime: Double? = nil
    public var availableOutgoingBitrate: Double? = nil
    public var nominated = false
}

/// Everything a status query shows about one peer connection.
public struct PeerConnectionStats: Sendable {
    public var iceState: String
    public var dtlsState: String
    public var inbound: [InboundRTPStats]
    public var outbound: [OutboundRTPStats]
    public var candidatePair: CandidatePairStats
    public var timeline: SetupTimeline
    /// Datagrams dropped because they were none of STUN, DTLS, RTP or RTCP, or did not parse.
    public var malformedDatagrams: UInt64
    /// Packets that failed SRTP authentication.
    public var srtpFailures: UInt64
    /// Remote `.local` candidates resolved through mDNS.
    public var mdnsResolved: Int
    /// STUN messages ignored: unauthenticated, spoofed or answering nothing we asked.
    public var ignoredSTUN: UInt64
    /// Congestion control's present video target.
    public var targetVideoBitrateKbps: Int
    /// Remote candidates ignored: over the per-description or per-connection cap.
    public var ignoredCandidates: UInt64 = 0
    /// DTLS records dropped because they came from an address ICE has not validated.
    public var refusedDTLS: UInt64 = 0
    /// Media packets dropped because their SSRC is not the stream's.
    public var refusedSSRCPackets: UInt64 = 0
    /// The two halves of congestion control: the loss-based and (with transport-wide
    /// feedback) the delay-based estimate, kbit/s, and the standing queue seen, ms.
    public var lossBasedKbps: Int = 0
    public var delayBasedKbps: Int? = nil
    public var queueDelayMs: Double? = nil
    /// Packets in transport feedback that we never sent (a lying or confused peer).
    public var unknownFeedbackPackets: UInt64 = 0
}

/// A rate that follows at once: an exponentially decaying sum (time constant ``tau``), read
/// at any instant. ``RateMeter`` reports the last complete window, which lags by up to two
/// windows: too late for resends, whose burst right after a drop is what must be yielded to.
struct DecayingRate {
    let tau: Double
    private var sum = 0.0
    private var at: Instant?

    init(tau: Double) { self.tau = tau }

    private func decayed(to now: Instant) -> Double {
        guard let at else { return 0 }
        let dt = max(0, (now - at).seconds)
        return sum * exp(-dt / tau)
    }

    mutating func add(_ amount: Double, now: Instant) {
        sum = decayed(to: now) + amount
        at = now
    }

    /// Amount per second lately.
    func current(now: Instant) -> Double { decayed(to: now) / tau }
}

/// A rate meter over consecutive windows (a second by default), for bitrate and fps.
struct RateMeter {
    let window: Double
    private var windowStart: Instant?
    private var count = 0.0
    private(set) var rate = 0.0

    init(window: Double = 1) { self.window = window }

    mutating func add(_ amount: Double, now: Instant) {
        guard let start = windowStart else { windowStart = now; count = amount; return }
        let elapsed = (now - start).seconds
        if elapsed >= window {
            rate = count / elapsed
            windowStart = now
            count = amount
        } else {
            count += amount
        }
    }

    /// The rate, decayed to zero when nothing arrived for two seconds.
    func current(now: Instant) -> Double {
        guard let start = windowStart else { return 0 }
        return (now - start).seconds > 2 ? 0 : rate
    }
}
