import NetworkCore

/// The receive side of one H.264 stream, I/O-free: NACK generation, frame assembly and
/// the keyframe-request policy, driven with the time as an argument.
///
/// The policy is to repair a loss with retransmissions wherever the sender can still
/// make them, and to ask for a keyframe (PLI) only when it cannot:
/// - a gap stays open while its packets are still being NACKed (about three repair
///   attempts, at most the NACK generator's age limit), not just
///   ``H264FrameAssembler/gapTimeout``: after a drop in
///   bandwidth the retransmissions wait behind the bottleneck's queue, and a keyframe sent
///   into that queue costs far more than the few packets it replaces;
/// - a gap that spans more time than the sender keeps packets for
///   (``maxRecoverableSpan``, an outage) cannot be repaired: it is given up at once and a
///   keyframe asked for on the spot, instead of after a timeout;
/// - NACKs are repeated once per round trip (at least ``NACKGenerator/retryInterval``),
///   so a queue that delays the retransmission does not multiply the requests;
/// - at most one PLI per ``pliInterval``.
public struct VideoReceiveChain {
    public private(set) var nack = NACKGenerator()
    public private(set) var assembler: H264FrameAssembler
    /// How far back the sender can resend (its history's age limit): packets missing over
    /// a longer stretch of media time are not asked for.
    public var maxRecoverableSpan: Duration = .milliseconds(900)
    public var pliInterval: Duration = .milliseconds(300)
    /// The shortest time between NACKs for one packet, whatever the round trip.
    public static let minimumRetryInterval: Duration = .milliseconds(50)
    /// Gaps given up at once because they spanned more than ``maxRecoverableSpan``.
    public private(set) var unrecoverableGaps = 0
    private var lastPLI: Instant?
    private var highest: (seq: UInt16, timestamp: UInt32)?
    private let shortGapTimeout: Duration
    private let clockRate: Double

    public init(capacity: Int = 512, gapTimeout: Duration = .milliseconds(300), clockRate: Int = 90000) {
        assembler = H264FrameAssembler(capacity: capacity, gapTimeout: gapTimeout)
        shortGapTimeout = gapTimeout
        self.clockRate = Double(clockRate)
    }

    /// The path's round trip (from RTCP): NACKs for one packet are repeated no sooner.
    public mutating func setRoundTrip(_ rtt: Duration) {
        nack.retryInterval = max(Self.minimumRetryInterval, rtt + rtt / 4 + .milliseconds(5))
    }

    /// Adds a media packet (or, `retransmission`, an RTX packet turned back into its
    /// original); returns the frames it completed, oldest first.
    public mutating func receive(_ packet: RTPPacket, captureNTP: UInt64? = nil, retransmission: Bool = false, now: Instant) -> [AssembledFrame] {
        let seq = packet.sequenceNumber
        // Everything missing before this packet was sent longer ago than the sender keeps:
        // no NACK, and a keyframe now rather than after the gap timeout.
        let unrecoverable = highest.map { h in
            SequenceNumber.distance(from: h.seq, to: seq) > 1
                && Double(Int32(bitPattern: packet.timestamp &- h.timestamp)) / clockRate > maxRecoverableSpan.seconds
        } ?? false
        if highest.map({ SequenceNumber.isNewer(seq, than: $0.seq) }) ?? true { highest = (seq, packet.timestamp) }
        nack.received(seq, retransmission: retransmission, now: now)
        if unrecoverable {
            unrecoverableGaps += 1
            nack.forgetMissing()
            // A keyframe starting here (a sender resuming after a pause) needs no PLI.
            assembler.giveUp(now: now, requestKeyframe: !H264Payload.startsKeyframe(packet.payload))
        }
        return assembler.insert(packet, captureNTP: captureNTP, now: now)
    }

    /// Periodic work (every 10 ms or so while anything is pending): frames released by a
    /// gap given up, the sequence numbers to NACK now, and whether to send a PLI.
    public mutating func tick(now: Instant) -> (frames: [AssembledFrame], nacks: [UInt16], pli: Bool) {
        let nacks = nack.due(now: now)
        // A gap whose packets are still being asked for waits for them: about three
        // repair attempts, at most as long as they are asked for.
        // (Worked out only while something is missing: Duration's `*` goes through 128-bit
        // arithmetic, and this runs 100 times a second.)
        if nack.missingCount > 0 {
            let attempts = nack.effectiveRetryInterval * 3 + .milliseconds(100)
            assembler.gapTimeout = max(shortGapTimeout, min(nack.maxAge, attempts))
        } else {
            assembler.gapTimeout = shortGapTimeout
        }
        let frames = assembler.poll(now: now)
        var pli = false
        if assembler.takeKeyframeRequest() {
            if lastPLI.map({ now - $0 > pliInterval }) ?? true {
                pli = true
                lastPLI = now
            }
        }
        return (frames, nacks, pli)
    }

    /// A PLI went out for another reason (the decoder failed): counts towards the limit.
    public mutating func keyframeRequested(now: Instant) { lastPLI = now }

    /// Frames dropped because they could not be completed.
    public var framesDropped: Int { assembler.framesDropped }
    /// Whether anything waits for time to pass (missing packets, an open gap).
    public var hasWork: Bool { nack.missingCount > 0 || highest != nil }
}
