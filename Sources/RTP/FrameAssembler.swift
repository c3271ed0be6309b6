import NetworkCore

/// A video frame put back together from its RTP packets.
public struct AssembledFrame: Sendable {
    public var rtpTimestamp: UInt32
    /// The access unit in Annex B form.
    public var data: [UInt8]
    public var isKeyframe: Bool
    public var packetCount: Int
    /// The sender's capture time (abs-capture-time), as NTP, when it was sent.
    public var captureNTP: UInt64?

    public init(rtpTimestamp: UInt32, data: [UInt8], isKeyframe: Bool, packetCount: Int, captureNTP: UInt64?) {
        self.rtpTimestamp = rtpTimestamp; self.data = data; self.isKeyframe = isKeyframe
        self.packetCount = packetCount; self.captureNTP = captureNTP
    }
}

/// Reassembles H.264 frames from RTP packets that may arrive lost, late, duplicated or
/// reordered (RFC 6184 packetization-mode 1).
///
/// A frame is delivered when all packets from the one after the previous frame's last
/// packet up to the packet with the marker bit are present. After an unrecoverable gap the
/// assembler waits for the next keyframe (SPS or IDR at the start of a frame) and tells
/// its owner to ask for one (PLI). No I/O: time comes in as an argument.
///
/// Not thread-safe: owned by one receive path.
public struct H264FrameAssembler {
    struct Slot {
        var seq: UInt16 = 0
        var timestamp: UInt32 = 0
        var marker = false
        var valid = false
        var captureNTP: UInt64? = nil
        var payload: [UInt8] = []
        /// A padding-only packet (a bandwidth probe): it holds a sequence number, no media.
        var padding = false
    }

    private var slots: [Slot]
    private let mask: Int
    /// Slots that hold a packet not yet delivered: every one of them is newer than the last
    /// delivered packet (skipped ones are cleared), so an empty ring needs no scan.
    private var validCount = 0
    /// The frames the last call completed, returned from here: its storage is reused by the
    /// next call once the caller has let go of it (an array per completed frame, before).
    private var completed: [AssembledFrame] = []
    /// The buffers of the last few frames handed out. Once their consumer (the decoder's
    /// queue) has let go of one, the next frame is written into it: no allocation per frame.
    /// A buffer still held elsewhere is left to its holder and a new one is made, as before.
    private var recycled: [[UInt8]] = Array(repeating: [], count: 4)
    private var recycleIndex = 0
    /// A buffer larger than this (an outsized keyframe) is not kept for reuse.
    static let maxRecycledCapacity = 512 * 1024
    private var lastDeliveredSeq: UInt16?
    private var waitingForKeyframe = true
    /// Sequence numbers of packets that start a keyframe, oldest first; at most
    /// ``maxKeyframeStarts`` (a stream of keyframe starts that never complete cannot grow it).
    private var keyframeStarts: [UInt16] = []
    public static let maxKeyframeStarts = 32
    /// The payload size a slot grows to: an RTP payload under a 1200-byte datagram.
    static let slotCapacity = 1200
    /// Keyframe starts forgotten because the list was full.
    public private(set) var keyframeStartsDropped = 0
    /// How many keyframe starts are remembered now (for tests and status).
    public var keyframeStartCount: Int { keyframeStarts.count }
    private var stalledSince: Instant?
    private var keyframeRequestPending = false
    /// How long a gap may stay open (waiting for retransmission) before giving up on it.
    public var gapTimeout: Duration

    /// Frames dropped because they could not be completed.
    public private(set) var framesDropped = 0

    public init(capacity: Int = 1024, gapTimeout: Duration = .milliseconds(300)) {
        var cap = 1
        while cap < capacity { cap <<= 1 }
        slots = Array(repeating: Slot(), count: cap)
        mask = cap - 1
        self.gapTimeout = gapTimeout
    }

    /// True once after the assembler gave up on a gap or started without a keyframe; the
    /// owner should send a PLI.
    public mutating func takeKeyframeRequest() -> Bool {
        defer { keyframeRequestPending = false }
        return keyframeRequestPending
    }

    /// Adds a packet; returns the frames it completed, oldest first.
    public mutating func insert(_ packet: RTPPacket, captureNTP: UInt64? = nil, now: Instant) -> [AssembledFrame] {
        let seq = packet.sequenceNumber
        if let last = lastDeliveredSeq, !SequenceNumber.isNewer(seq, than: last) { return [] }
        let idx = Int(seq) & mask
        if slots[idx].valid && slots[idx].seq == seq { return [] }  // duplicate
        if !slots[idx].valid { validCount += 1 }
        slots[idx].seq = seq
        slots[idx].timestamp = packet.timestamp
        slots[idx].marker = packet.marker
        slots[idx].valid = true
        slots[idx].captureNTP = captureNTP
        slots[idx].padding = packet.payload.isEmpty
        slots[idx].payload.removeAll(keepingCapacity: true)
        if slots[idx].payload.capacity < packet.payload.count {
            // Grown once to a full packet, so a slot allocates at most once in a call.
            slots[idx].payload.reserveCapacity(max(packet.payload.count, H264FrameAssembler.slotCapacity))
        }
        slots[idx].payload.append(contentsOf: packet.payload)
        if H264Payload.startsKeyframe(packet.payload) {
            // Starts whose packet was since overwritten in the ring can never complete.
            keyframeStarts.removeAll { s in s == seq || !(slots[Int(s) & mask].valid && slots[Int(s) & mask].seq == s) }
            if keyframeStarts.count >= H264FrameAssembler.maxKeyframeStarts {
                keyframeStarts.removeFirst(keyframeStarts.count - H264FrameAssembler.maxKeyframeStarts + 1)
                keyframeStartsDropped += 1
            }
            keyframeStarts.append(seq)
        }
        return drain(now: now)
    }

    /// Gives up on whatever is missing now (its owner knows it cannot be repaired): waits
    /// for the next keyframe and asks for one unless told one is on its way.
    public mutating func giveUp(now: Instant, requestKeyframe: Bool = true) {
        if !waitingForKeyframe && lastDeliveredSeq != nil { framesDropped += 1 }
        waitingForKeyframe = true
        if requestKeyframe { keyframeRequestPending = true }
        stalledSince = now
    }

    /// Gives up on gaps older than ``gapTimeout``; call periodically.
    public mutating func poll(now: Instant) -> [AssembledFrame] {
        drain(now: now)
    }

    private mutating func drain(now: Instant) -> [AssembledFrame] {
        completed.removeAll(keepingCapacity: true)
        var out = completed
        completed = []
        defer { completed = out }
        while true {
            if !waitingForKeyframe, let last = lastDeliveredSeq, let end = completeFrame(from: last &+ 1) {
                emit(from: last &+ 1, to: end, into: &out)
                continue
            }
            // A complete keyframe later in the stream supersedes whatever is missing before it.
            keyframeStarts.removeAll { s in
                if let last = lastDeliveredSeq { return !SequenceNumber.isNewer(s, than: last) }
                return false
            }
            // The oldest keyframe start whose frame is complete (found without sorting the list).
            var oldest: (start: UInt16, end: UInt16)?
            for start in keyframeStarts {
                if let o = oldest, !SequenceNumber.isNewer(o.start, than: start) { continue }
                if let end = completeFrame(from: start) { oldest = (start, end) }
            }
            guard let (start, end) = oldest else { break }
            if !waitingForKeyframe { framesDropped += 1 }
            waitingForKeyframe = false
            // The keyframe asked for (or a better one) is here: no PLI needed.
            keyframeRequestPending = false
            emit(from: start, to: end, into: &out)
        }
        if out.isEmpty {
            if hasPendingPackets() {
                if let since = stalledSince {
                    if now - since > gapTimeout && !waitingForKeyframe {
                        waitingForKeyframe = true
                        keyframeRequestPending = true
                        framesDropped += 1
                        stalledSince = now
                    } else if now - since > gapTimeout {
                        keyframeRequestPending = true
                        stalledSince = now
                    }
                } else {
                    stalledSince = now
                    if lastDeliveredSeq == nil && keyframeStarts.isEmpty { keyframeRequestPending = true }
                }
            }
        } else {
            stalledSince = hasPendingPackets() ? now : nil
        }
        return out
    }

    private func hasPendingPackets() -> Bool {
        // Delivered and skipped slots are cleared, so what is left is pending: no scan of
        // the ring on every tick (it was one, 1 024 slots, 100 times a second).
        validCount > 0
    }

    /// Clears one slot.
    private mutating func release(_ idx: Int) {
        if slots[idx].valid { validCount -= 1 }
        slots[idx].valid = false
    }

    /// If packets `start...marker` are all present with one timestamp, the marker's seq.
    private func completeFrame(from start: UInt16) -> UInt16? {
        let first = slots[Int(start) & mask]
        guard first.valid, first.seq == start else { return nil }
        // Padding between frames completes on its own (and yields no frame).
        if first.padding { return start }
        var seq = start
        var count = 0
        while count < slots.count {
            let s = slots[Int(seq) & mask]
            guard s.valid, s.seq == seq, s.timestamp == first.timestamp else { return nil }
            if s.marker { return seq }
            seq &+= 1
            count += 1
        }
        return nil
    }

    private mutating func emit(from start: UInt16, to end: UInt16, into out: inout [AssembledFrame]) {
        // A jump (the first frame, or a keyframe that supersedes a gap): packets older than
        // its start can never be delivered now. Clear them; jumps are rare, so one pass over
        // the ring here keeps every tick free of scans.
        if lastDeliveredSeq.map({ $0 &+ 1 != start }) ?? true {
            for i in slots.indices where slots[i].valid && SequenceNumber.isNewer(start, than: slots[i].seq) { release(i) }
        }
        if start == end && slots[Int(start) & mask].padding {
            release(Int(start) & mask)
            lastDeliveredSeq = end
            return
        }
        // One allocation per frame: payloads plus a start code per NAL unit, with room for
        // the start codes of STAP-A's units (each at most 2 bytes more than its length field).
        var size = 0
        var seq = start
        while true {
            size += slots[Int(seq) & mask].payload.count + 4
            if seq == end { break }
            seq &+= 1
        }
        var data = recycled[recycleIndex]
        recycled[recycleIndex] = []
        // Unique again once its consumer let go: emptied in place. Otherwise this makes new
        // storage (the one allocation a frame used to cost).
        data.removeAll(keepingCapacity: true)
        data.reserveCapacity(size + size / 8 + 16)
        var fuOpen = false
        var ok = true
        var keyframe = false
        var capture: UInt64? = nil
        seq = start
        var count = 0
        while true {
            let idx = Int(seq) & mask
            let payload = slots[idx].payload[...]
            if H264Payload.containsIDR(payload) { keyframe = true }
            if capture == nil { capture = slots[idx].captureNTP }
            if !H264Payload.depacketize(payload, into: &data, fuOpen: &fuOpen) { ok = false }
            release(idx)
            count += 1
            if seq == end { break }
            seq &+= 1
        }
        lastDeliveredSeq = end
        if data.capacity <= H264FrameAssembler.maxRecycledCapacity { recycled[recycleIndex] = data }
        recycleIndex = (recycleIndex + 1) % recycled.count
        if ok && !fuOpen {
            out.append(AssembledFrame(rtpTimestamp: slots[Int(end) & mask].timestamp, data: data,
                                      isKeyframe: keyframe, packetCount: count, captureNTP: capture))
        } else {
            framesDropped += 1
            waitingForKeyframe = true
            keyframeRequestPending = true
        }
    }
}

/// Tracks missing sequence numbers and says which to NACK (RFC 4585 §6.2.1), retrying
/// each at most `maxRetries` times, no more often than once per `retryInterval`.
public struct NACKGenerator {
    struct Missing { var firstSeen: Instant; var lastSent: Instant?; var retries: Int; var firstSent: Instant? = nil }
    private var missing: [UInt16: Missing] = [:]
    private var highest: UInt16?
    public var maxRetries = 10
    public var retryInterval: Duration = .milliseconds(50)
    public var maxAge: Duration = .milliseconds(1000)
    /// At most this many sequence numbers are tracked: a peer skipping ahead again and
    /// again starts the table over instead of growing it (and the NACKs) to 65 536.
    public var maxMissing = 1000
    /// How long a gap waits before its first NACK: as long as reordering has been seen to
    /// fill gaps on this path (0 on a path that keeps order, at most ``maxReorderWait``),
    /// so that jitter which reorders packets does not send NACKs and RTX for packets still
    /// on their way.
    public private(set) var reorderWait: Duration = .zero
    public static let maxReorderWait: Duration = .milliseconds(80)
    /// Gaps filled by a packet we had not asked for yet: reordering.
    public private(set) var reorderedFills = 0
    /// Whether resends arrive marked (RTX): then a packet asked for that arrives unmarked
    /// is known to be the original.
    private var resendsAreMarked = false

    public init() {}

    /// Notes a received packet; returns true if it filled a gap (a retransmission or reorder).
    /// `retransmission`: it came on the RTX stream (RFC 4588), so it is a resend for sure;
    /// a packet asked for that comes on the media stream was the original, late.
    @discardableResult
    public mutating func received(_ seq: UInt16, retransmission: Bool = false, now: Instant) -> Bool {
        guard let h = highest else { highest = seq; return false }
        let d = SequenceNumber.distance(from: h, to: seq)
        if d > 0 {
            if d > 1 && d < 1000 {
                if missing.count + d - 1 > maxMissing { missing.removeAll() }
                var s = h &+ 1
                while s != seq { missing[s] = Missing(firstSeen: now, lastSent: nil, retries: 0); s &+= 1 }
            } else if d >= 1000 {
                missing.removeAll()
            }
            highest = seq
            return false
        }
        if retransmission { resendsAreMarked = true }
        guard let m = missing.removeValue(forKey: seq) else { return false }
        if let asked = m.firstSent, m.retries == 1 {
            // How long a repair takes on this path now, queue included. Only a packet
            // asked for once says so unambiguously: after a second ask, the time from the
            // first counts a lost resend too, and each such sample would lengthen the wait
            // that makes the next one longer. (Until repairs are seen, the round trip from
            // RTCP sets the interval, and it includes the queue.)
            let took = now - asked
            repairTime = repairTime.map { $0 + (took - $0) / 4 } ?? took
        }
        // Reordering: a gap filled before it was asked for, or (with RTX, which tells a
        // resend from the original) by the original after the ask. Without the second, a
        // path whose reordering outlasts one tick never learns to wait: every late packet
        // is asked for, resent, and the resends crowd out the picture.
        if m.lastSent == nil || (resendsAreMarked && !retransmission) {
            // Up at once to what this packet needed (with a margin), down slowly.
            reorderedFills += 1
            let needed = (now - m.firstSeen) * 1.25 + .milliseconds(2)
            reorderWait = needed > reorderWait ? min(needed, Self.maxReorderWait) : reorderWait - (reorderWait - needed) / 32
        }
        return true
    }

    /// The sequence numbers to NACK now, in order.
    public mutating func due(now: Instant) -> [UInt16] {
        guard !missing.isEmpty else { return [] }
        var out: [UInt16] = []
        for (seq, var m) in missing {
            if now - m.firstSeen > maxAge || m.retries >= maxRetries { missing[seq] = nil; continue }
            if let last = m.lastSent, now - last < effectiveRetryInterval { continue }
            if m.lastSent == nil && now - m.firstSeen < reorderWait { continue }
            m.lastSent = now
            if m.firstSent == nil { m.firstSent = now }
            m.retries += 1
            missing[seq] = m
            out.append(seq)
        }
        guard let h = highest else { return out }
        return out.sorted { SequenceNumber.distance(from: $0, to: h) > SequenceNumber.distance(from: $1, to: h) }
    }

    public var missingCount: Int { missing.count }

    /// How long a NACK answered on its first ask took to be repaired (smoothed): the round
    /// trip plus whatever queue the resend waited in.
    public private(set) var repairTime: Duration?
    /// The longest wait between two NACKs for one packet, however slow repairs get.
    public static let maxRetryInterval: Duration = .milliseconds(400)

    /// The wait before asking again: ``retryInterval``, or longer when repairs have been
    /// seen to take longer (a NACK repeated before its resend could arrive is a duplicate).
    public var effectiveRetryInterval: Duration {
        let asked = repairTime.map { max(retryInterval, $0 + $0 / 4 + .milliseconds(5)) } ?? retryInterval
        return min(Self.maxRetryInterval, asked)
    }

    /// Stops asking for everything missing now (it cannot be resent any more).
    public mutating func forgetMissing() { missing.removeAll() }
}
