import NetworkCore

/// The transport-wide sequence number header extension and its RTCP feedback
/// (draft-holmer-rmcat-transport-wide-cc-extensions-01): every RTP packet of the BUNDLE
/// carries one 16-bit counter, and the receiver reports when each arrived, so the sender
/// sees queueing delay build up before a bottleneck drops anything.
public enum TransportWideCC {
    public static let uri = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    /// Receive deltas are counted in 250 µs ticks; the reference time in 64 ms units.
    public static let tickMicroseconds: Int64 = 250
    public static let referenceMicroseconds: Int64 = 64_000
}

/// One transport-wide feedback message (RTPFB, FMT 15).
///
/// Only the received packets are kept (lost ones are implied by `statusCount`), so a
/// message's memory is bounded by its size on the wire, whatever its status count claims.
public struct TransportFeedback: Equatable, Sendable {
    public var senderSSRC: UInt32
    public var mediaSSRC: UInt32
    public var baseSequence: UInt16
    /// Packets covered, from `baseSequence` on.
    public var statusCount: UInt16
    /// 24-bit signed, in 64 ms units.
    public var referenceTime: Int32
    public var feedbackCount: UInt8
    /// The packets that arrived: offset from `baseSequence`, arrival in 250 µs ticks from
    /// the reference time. Ascending offsets.
    public var received: [(offset: UInt16, ticks: Int64)]

    public init(senderSSRC: UInt32, mediaSSRC: UInt32, baseSequence: UInt16, statusCount: UInt16, referenceTime: Int32,
                feedbackCount: UInt8, received: [(offset: UInt16, ticks: Int64)]) {
        self.senderSSRC = senderSSRC; self.mediaSSRC = mediaSSRC; self.baseSequence = baseSequence
        self.statusCount = statusCount; self.referenceTime = referenceTime; self.feedbackCount = feedbackCount
        self.received = received
    }

    public static func == (a: TransportFeedback, b: TransportFeedback) -> Bool {
        a.senderSSRC == b.senderSSRC && a.mediaSSRC == b.mediaSSRC && a.baseSequence == b.baseSequence && a.statusCount == b.statusCount
            && a.referenceTime == b.referenceTime && a.feedbackCount == b.feedbackCount
            && a.received.map(\.offset) == b.received.map(\.offset) && a.received.map(\.ticks) == b.received.map(\.ticks)
    }

    /// Status symbols: not received, small delta (1 byte), large or negative delta (2 bytes).
    enum Symbol: UInt8 { case notReceived = 0, small = 1, large = 2 }

    /// Parses the FCI after the two SSRCs (``TransportFeedbackView`` checks it).
    init(senderSSRC: UInt32, mediaSSRC: UInt32, reader r: inout ByteReader) throws(RTPParseError) {
        self.init(try TransportFeedbackView(senderSSRC: senderSSRC, mediaSSRC: mediaSSRC, reader: &r))
    }

    /// A message read in place, copied out.
    public init(_ view: TransportFeedbackView) {
        self.init(senderSSRC: view.senderSSRC, mediaSSRC: view.mediaSSRC, baseSequence: view.baseSequence, statusCount: view.statusCount,
                  referenceTime: view.referenceTime, feedbackCount: view.feedbackCount, received: [])
        received.reserveCapacity(view.receivedCount)
        for p in view { received.append(p) }
    }

    /// Appends the FCI (after the SSRCs) to `b`, padded to 32 bits. Deltas must fit in a
    /// signed 16-bit tick count (the generator splits messages where they would not).
    func serializeFCI(into b: inout [UInt8]) {
        var symbols: [Symbol] = []
        Self.serializeFCI(baseSequence: baseSequence, statusCount: statusCount, referenceTime: referenceTime, feedbackCount: feedbackCount,
                          received: received, symbols: &symbols, into: &b)
    }

    /// The FCI of a message given by its fields; `symbols` is scratch (its storage is
    /// reused by a caller that keeps it: no allocation once it has grown).
    static func serializeFCI(baseSequence: UInt16, statusCount: UInt16, referenceTime: Int32, feedbackCount: UInt8,
                             received: some Collection<(offset: UInt16, ticks: Int64)>, symbols: inout [Symbol], into b: inout [UInt8]) {
        b.appendU16(baseSequence)
        b.appendU16(statusCount)
        b.appendU24(UInt32(bitPattern: referenceTime) & 0xFF_FFFF)
        b.append(feedbackCount)
        // Symbols for every covered packet, then the chunks: two-bit vectors of seven
        // where any large delta is present, one-bit vectors of fourteen otherwise, and
        // run lengths for long stretches of one symbol (a loss burst).
        symbols.removeAll(keepingCapacity: true)
        symbols.append(contentsOf: repeatElement(.notReceived, count: Int(statusCount)))
        var last: Int64 = 0
        for (offset, ticks) in received where Int(offset) < symbols.count {
            let d = ticks - last
            last = ticks
            symbols[Int(offset)] = (0...255).contains(d) ? .small : .large
        }
        var i = 0
        while i < symbols.count {
            var run = 1
            while i + run < symbols.count, symbols[i + run] == symbols[i], run < 8191 { run += 1 }
            if run >= 14 {
                b.appendU16(UInt16(symbols[i].rawValue) << 13 | UInt16(run))
                i += run
                continue
            }
            let window = symbols[i..<min(i + 14, symbols.count)]
            if !window.contains(.large) {
                var chunk: UInt16 = 0x8000
                for (k, s) in window.enumerated() where s == .small { chunk |= 1 << (13 - k) }
                b.appendU16(chunk)
                i += window.count
            } else {
                var chunk: UInt16 = 0xC000
                let seven = symbols[i..<min(i + 7, symbols.count)]
                for (k, s) in seven.enumerated() { chunk |= UInt16(s.rawValue) << (12 - 2 * k) }
                b.appendU16(chunk)
                i += seven.count
            }
        }
        // The deltas again, in the same order (no array of them).
        last = 0
        for (offset, ticks) in received where Int(offset) < symbols.count {
            let d = ticks - last
            last = ticks
            if (0...255).contains(d) { b.append(UInt8(d)) } else { b.appendU16(UInt16(bitPattern: Int16(clamping: d))) }
        }
        while b.count % 4 != 0 { b.append(0) }
    }
}

/// A transport-wide feedback message read in place: the fields, and the received packets
/// decoded from the datagram as they are iterated (nothing copied, nothing allocated).
/// Built only from a message that parsed whole, so iterating it cannot fail.
public struct TransportFeedbackView: Sequence, Sendable {
    public let senderSSRC: UInt32
    public let mediaSSRC: UInt32
    public let baseSequence: UInt16
    public let statusCount: UInt16
    public let referenceTime: Int32
    public let feedbackCount: UInt8
    /// How many packets the message reports arrived.
    public let receivedCount: Int
    let bytes: [UInt8]
    /// Where the status chunks and the receive deltas start in `bytes`.
    let chunks: Int
    let deltas: Int

    /// Checks the FCI after the two SSRCs. Throws on truncation, reserved symbols and
    /// deltas that would not fit; a status count past the chunks is an error too.
    init(senderSSRC: UInt32, mediaSSRC: UInt32, reader r: inout ByteReader) throws(RTPParseError) {
        func fail(_ what: String) -> RTPParseError { RTPParseError("RTCP transport feedback \(what)") }
        guard let base = r.u16(), let count = r.u16(), let ref = r.u24(), let fbCount = r.u8() else { throw fail("header truncated") }
        self.senderSSRC = senderSSRC; self.mediaSSRC = mediaSSRC
        baseSequence = base; statusCount = count; feedbackCount = fbCount
        referenceTime = ref & 0x80_0000 != 0 ? Int32(bitPattern: ref | 0xFF00_0000) : Int32(ref)
        bytes = r.bytes
        chunks = r.offset
        // Counts the received packets and their delta bytes; nothing is kept.
        var received = 0, deltaBytes = 0
        var covered = 0
        while covered < Int(count) {
            guard let chunk = r.u16() else { throw fail("chunks end after \(covered) of \(count) packets") }
            if chunk & 0x8000 == 0 {
                // Run length: one symbol, up to 8191 times.
                guard let s = TransportFeedback.Symbol(rawValue: UInt8(chunk >> 13 & 3)) else { throw fail("reserved status symbol") }
                let run = Swift.min(Int(chunk & 0x1FFF), Int(count) - covered)
                guard run > 0 else { throw fail("empty run-length chunk") }
                if s != .notReceived {
                    // Each received packet needs a delta byte: a run longer than what is left
                    // of the message is a lie, refused before it is believed.
                    guard run <= r.remaining else { throw fail("run of \(run) received packets overruns the message") }
                    received += run
                    deltaBytes += run * Int(s.rawValue)
                }
                covered += run
            } else if chunk & 0x4000 == 0 {
                // Fourteen one-bit symbols.
                for k in 0..<14 where covered < Int(count) {
                    if chunk >> (13 - k) & 1 == 1 { received += 1; deltaBytes += 1 }
                    covered += 1
                }
            } else {
                // Seven two-bit symbols.
                for k in 0..<7 where covered < Int(count) {
                    guard let s = TransportFeedback.Symbol(rawValue: UInt8(chunk >> (12 - 2 * k) & 3)) else { throw fail("reserved status symbol") }
                    if s != .notReceived { received += 1; deltaBytes += Int(s.rawValue) }
                    covered += 1
                }
            }
            // Every received packet needs at least one delta byte after the chunks.
            guard received <= r.remaining else { throw fail("\(received) received packets but \(r.remaining) bytes left") }
        }
        deltas = r.offset
        guard r.skip(deltaBytes) else { throw fail("receive deltas truncated") }
        receivedCount = received
    }

    public func makeIterator() -> Iterator { Iterator(self) }

    /// The received packets in order: offset from `baseSequence`, arrival in 250 µs ticks
    /// from the reference time. Walks the chunks and the deltas side by side.
    public struct Iterator: IteratorProtocol {
        let bytes: [UInt8]
        let statusCount: Int
        var chunkAt: Int
        var deltaAt: Int
        var covered = 0
        var ticks: Int64 = 0
        var chunk: UInt16 = 0
        /// Symbols left in the current chunk, and the next one's index in it.
        var left = 0
        var k = 0

        init(_ v: TransportFeedbackView) {
            bytes = v.bytes; statusCount = Int(v.statusCount); chunkAt = v.chunks; deltaAt = v.deltas
        }

        public mutating func next() -> (offset: UInt16, ticks: Int64)? {
            while covered < statusCount {
                if left == 0 {
                    chunk = UInt16(bytes[chunkAt]) << 8 | UInt16(bytes[chunkAt + 1])
                    chunkAt += 2
                    k = 0
                    if chunk & 0x8000 == 0 {
                        left = Swift.min(Int(chunk & 0x1FFF), statusCount - covered)
                        // A run of losses: nothing to decode.
                        if chunk >> 13 & 3 == 0 { covered += left; left = 0; continue }
                    } else {
                        left = Swift.min(chunk & 0x4000 == 0 ? 14 : 7, statusCount - covered)
                    }
                }
                let symbol: UInt16
                if chunk & 0x8000 == 0 {
                    symbol = chunk >> 13 & 3
                } else if chunk & 0x4000 == 0 {
                    symbol = chunk >> (13 - UInt16(k)) & 1
                } else {
                    symbol = chunk >> (12 - 2 * UInt16(k)) & 3
                }
                k += 1; left -= 1; covered += 1
                if symbol == 1 {
                    ticks += Int64(bytes[deltaAt])
                    deltaAt += 1
                } else if symbol == 2 {
                    ticks += Int64(Int16(bitPattern: UInt16(bytes[deltaAt]) << 8 | UInt16(bytes[deltaAt + 1])))
                    deltaAt += 2
                } else {
                    continue
                }
                return (UInt16(truncatingIfNeeded: covered - 1), ticks)
            }
            return nil
        }
    }
}

/// The receiver's side: records when each transport-wide sequence number arrived and,
/// every `interval`, turns them into feedback messages. I/O-free; arrivals come in with
/// their time. Holds at most ``maxPending`` arrivals between messages.
public struct TransportFeedbackGenerator: Sendable {
    public static let maxPending = 1024
    /// How far behind the reported range a late arrival is still reported (packets).
    public static let lateWindow = 1024
    /// Packets per message: keeps a message well inside one datagram.
    static let maxPerMessage = 400
    public var interval: Duration
    private var pending: [(sequence: Int64, arrivalMicros: Int64)] = []
    private var unwrapper = SequenceUnwrapper()
    /// The first sequence number not yet reported.
    private var nextBase: Int64?
    private var feedbackCount: UInt8 = 0
    private var lastSent: Instant?
    /// Arrivals dropped because ``maxPending`` were waiting (a flood between messages).
    public private(set) var overflowed = 0

    public init(interval: Duration = .milliseconds(50)) {
        self.interval = interval
        pending.reserveCapacity(TransportFeedbackGenerator.maxPending)
        receivedScratch.reserveCapacity(TransportFeedbackGenerator.maxPerMessage)
    }

    /// A packet carrying transport-wide sequence number `sequence` arrived at `now`.
    public mutating func received(sequence: UInt16, now: Instant) {
        let s = unwrapper.unwrap(sequence)
        // A reordered packet behind what was reported goes in the next message too (which
        // then starts at it): reported lost already, it would otherwise stay lost for the
        // sender, and reordering would read as loss. Far behind is a stale duplicate.
        if let base = nextBase, s < base - Int64(TransportFeedbackGenerator.lateWindow) { return }
        guard pending.count < TransportFeedbackGenerator.maxPending else { overflowed += 1; return }
        pending.append((s, Int64(now.nanoseconds / 1000)))
    }

    /// When feedback is next due (nil: nothing to report).
    public var nextDeadline: Instant? {
        guard !pending.isEmpty else { return nil }
        return lastSent.map { $0 + interval } ?? Instant(nanoseconds: 0)
    }

    /// Feedback messages when due, oldest first.
    public mutating func poll(now: Instant, senderSSRC: UInt32, mediaSSRC: UInt32) -> [TransportFeedback] {
        var out: [TransportFeedback] = []
        drain(now: now) { base, count, reference, feedbackCount, received in
            out.append(TransportFeedback(senderSSRC: senderSSRC, mediaSSRC: mediaSSRC, baseSequence: base, statusCount: count,
                                         referenceTime: reference, feedbackCount: feedbackCount, received: Array(received)))
        }
        return out
    }

    /// The same messages, when due, appended to `b` as RTCP packets (a compound packet):
    /// what the transport thread sends, with no allocation once `b` and the generator's
    /// scratch have grown. Returns how many messages were appended.
    public mutating func poll(now: Instant, senderSSRC: UInt32, mediaSSRC: UInt32, appendingTo b: inout [UInt8]) -> Int {
        var symbols: [TransportFeedback.Symbol] = []
        swap(&symbols, &symbolScratch)
        defer { swap(&symbols, &symbolScratch) }
        var n = 0
        drain(now: now) { base, count, reference, feedbackCount, received in
            RTCPPacket.serializeTransportFeedback(sender: senderSSRC, media: mediaSSRC, baseSequence: base, statusCount: count,
                                                  referenceTime: reference, feedbackCount: feedbackCount, received: received,
                                                  symbols: &symbols, into: &b)
            n += 1
        }
        return n
    }

    /// A message's packets and status symbols, kept from one poll to the next.
    private var receivedScratch: [(offset: UInt16, ticks: Int64)] = []
    private var symbolScratch: [TransportFeedback.Symbol] = []

    /// Turns what is pending into messages when due: base sequence, status count,
    /// reference time, feedback count and the received packets of each, oldest first.
    private mutating func drain(now: Instant, _ emit: (UInt16, UInt16, Int32, UInt8, ArraySlice<(offset: UInt16, ticks: Int64)>) -> Void) {
        guard !pending.isEmpty, lastSent.map({ now - $0 >= interval }) ?? true else { return }
        lastSent = now
        // Arrivals come in sequence order but for reordering: the sort (which allocates
        // its merge buffer) runs only then.
        if !pending.indices.dropFirst().allSatisfy({ pending[$0 - 1].sequence <= pending[$0].sequence }) {
            pending.sort { $0.sequence < $1.sequence }
        }
        var received: [(offset: UInt16, ticks: Int64)] = []
        swap(&received, &receivedScratch)
        defer { swap(&received, &receivedScratch) }
        var i = 0
        while i < pending.count {
            // Duplicates report once.
            if i > 0 && pending[i].sequence == pending[i - 1].sequence { i += 1; continue }
            let start = nextBase ?? pending[i].sequence
            // A late arrival opens its message; its neighbours already reported show as
            // not received again, which the sender knows to skip.
            let base = pending[i].sequence < start ? pending[i].sequence : max(start, pending[i].sequence - 8000)
            let reference = pending[i].arrivalMicros / TransportWideCC.referenceMicroseconds
            received.removeAll(keepingCapacity: true)
            var lastTicks: Int64 = 0
            var end = i
            while end < pending.count, received.count < TransportFeedbackGenerator.maxPerMessage {
                let p = pending[end]
                if end > i && p.sequence == pending[end - 1].sequence { end += 1; continue }
                let offset = p.sequence - base
                guard offset < 0xFFFF else { break }
                let ticks = (p.arrivalMicros - reference * TransportWideCC.referenceMicroseconds) / TransportWideCC.tickMicroseconds
                // A gap too long for one delta starts the next message.
                if !received.isEmpty && !(Int64(Int16.min)...Int64(Int16.max)).contains(ticks - lastTicks) { break }
                received.append((UInt16(offset), ticks))
                lastTicks = ticks
                end += 1
            }
            let count = UInt16(pending[end - 1].sequence - base + 1)
            emit(UInt16(truncatingIfNeeded: base), count, Int32(truncatingIfNeeded: reference) & 0x7F_FFFF, feedbackCount, received[...])
            feedbackCount &+= 1
            nextBase = max(nextBase ?? .min, pending[end - 1].sequence + 1)
            i = end
        }
        pending.removeAll(keepingCapacity: true)
    }
}

/// Extends 16-bit sequence numbers to a monotonic 64-bit count (RFC 3550 A.1 style).
public struct SequenceUnwrapper: Sendable {
    private var last: Int64?
    public init() {}
    public mutating func unwrap(_ s: UInt16) -> Int64 {
        guard let last else { self.last = Int64(s); return Int64(s) }
        let delta = Int64(Int16(bitPattern: s &- UInt16(truncatingIfNeeded: last)))
        let v = last + delta
        if v > last { self.last = v }
        return v
    }
}

/// What the sender remembers of each packet it sent with a transport-wide sequence number,
/// to pair feedback with send times. A fixed ring: the newest ``capacity`` packets.
public struct SendHistory: Sendable {
    public static let capacity = 4096
    struct Entry { var sequence: Int64 = -1; var sendMicros: Int64 = 0; var size: Int = 0; var acked = false; var lossReported = false; var probe: Int = -1 }
    private var ring = [Entry](repeating: Entry(), count: SendHistory.capacity)
    private var unwrapper = SequenceUnwrapper()
    /// The highest sequence number sent (unwrapped).
    public private(set) var highest: Int64 = -1
    /// Media and probe packets reported arrived, and reported lost and still missing
    /// ``lossConfirmation`` later (a reordered packet turns up within that; it is no loss).
    public private(set) var packetsArrived: UInt64 = 0
    public private(set) var packetsLost: UInt64 = 0
    public static let lossConfirmation: Duration = .milliseconds(200)
    /// Losses waiting for confirmation: ring index, sequence, when reported. Bounded.
    private var unconfirmed: [(index: Int, sequence: Int64, reported: Instant)] = []
    private var unconfirmedStart = 0
    static let maxUnconfirmed = 1024

    public init() { unconfirmed.reserveCapacity(SendHistory.maxUnconfirmed) }

    /// Counts the losses reported ``lossConfirmation`` ago or earlier whose packets never
    /// turned up; call before reading ``packetsLost``.
    public mutating func confirmLosses(now: Instant) {
        while unconfirmedStart < unconfirmed.count, now - unconfirmed[unconfirmedStart].reported >= SendHistory.lossConfirmation {
            let u = unconfirmed[unconfirmedStart]
            unconfirmedStart += 1
            if ring[u.index].sequence == u.sequence && !ring[u.index].acked { packetsLost += 1 }
        }
        if unconfirmedStart == unconfirmed.count {
            unconfirmed.removeAll(keepingCapacity: true); unconfirmedStart = 0
        } else if unconfirmedStart >= SendHistory.maxUnconfirmed / 2 {
            unconfirmed.removeFirst(unconfirmedStart); unconfirmedStart = 0
        }
    }

    /// A packet left; `probe` names the probe cluster it belongs to (-1: media).
    public mutating func sent(sequence: UInt16, size: Int, at now: Instant, probe: Int = -1) {
        let s = unwrapper.unwrap(sequence)
        highest = max(highest, s)
        ring[Int(s & Int64(SendHistory.capacity - 1))] = Entry(sequence: s, sendMicros: Int64(now.nanoseconds / 1000), size: size, probe: probe)
    }

    /// Leaves `sequence` out of feedback from now on (a retransmission reused it).
    public mutating func forget(sequence: UInt16) {
        for i in [Int(sequence) & (SendHistory.capacity - 1)] where ring[i].sequence & 0xFFFF == Int64(sequence) { ring[i].acked = true }
    }

    /// One packet's fate, from a feedback message.
    public struct Result: Sendable, Equatable {
        public var sendMicros: Int64
        public var size: Int
        /// Arrival on the receiver's clock in µs (nil: reported lost).
        public var arrivalMicros: Int64?
        /// The probe cluster it was sent in (-1: media).
        public var probe: Int = -1
        /// Received after an earlier message reported it lost (reordering, not loss).
        public var late = false
    }

    /// Pairs a feedback message, received at `now`, with what was sent. Packets we never
    /// sent (or forgot) are skipped and counted in `unknown`; a packet reported again is
    /// skipped, unless it arrived after an earlier message reported it lost (`late`).
    public mutating func results(for fb: TransportFeedback, now: Instant) -> (results: [Result], unknown: Int) {
        var out: [Result] = []
        if highest >= 0 { out.reserveCapacity(min(Int(fb.statusCount), SendHistory.capacity)) }
        let unknown = results(baseSequence: fb.baseSequence, statusCount: fb.statusCount, referenceTime: fb.referenceTime,
                              received: fb.received.makeIterator(), now: now, into: &out)
        return (out, unknown)
    }

    /// The same for a message read in place, into `out` (emptied first; its storage is
    /// reused: no allocation once it has grown). Returns the `unknown` count.
    public mutating func results(for fb: TransportFeedbackView, now: Instant, into out: inout [Result]) -> Int {
        out.removeAll(keepingCapacity: true)
        return results(baseSequence: fb.baseSequence, statusCount: fb.statusCount, referenceTime: fb.referenceTime,
                       received: fb.makeIterator(), now: now, into: &out)
    }

    private mutating func results<I: IteratorProtocol<(offset: UInt16, ticks: Int64)>>(
        baseSequence: UInt16, statusCount: UInt16, referenceTime: Int32, received: I, now: Instant, into out: inout [Result]
    ) -> Int {
        confirmLosses(now: now)
        guard highest >= 0 else { return Int(statusCount) }
        // The base's unwrapped value: the one nearest to what we have sent.
        let base = highest + Int64(Int16(bitPattern: baseSequence &- UInt16(truncatingIfNeeded: highest)))
        let reference = Int64(referenceTime) * TransportWideCC.referenceMicroseconds
        var received = received
        var nextReceived = received.next()
        var unknown = 0
        for k in 0..<Int(statusCount) {
            var arrival: Int64? = nil
            if let r = nextReceived, Int(r.offset) == k {
                arrival = reference + r.ticks * TransportWideCC.tickMicroseconds
                nextReceived = received.next()
            }
            let s = base + Int64(k)
            let i = Int(s & Int64(SendHistory.capacity - 1))
            guard s <= highest, s > highest - Int64(SendHistory.capacity), ring[i].sequence == s else { unknown += 1; continue }
            // Overlapping messages report a packet twice: its arrival counts once, and a
            // loss once, until a later message reports it arrived after all.
            if ring[i].acked { continue }
            let late = ring[i].lossReported
            if arrival != nil {
                ring[i].acked = true
                packetsArrived += 1
            } else if late {
                continue
            } else {
                ring[i].lossReported = true
                if unconfirmed.count - unconfirmedStart < SendHistory.maxUnconfirmed {
                    unconfirmed.append((i, s, now))
                } else {
                    packetsLost += 1   // a flood of losses: no time to wait for each
                }
            }
            out.append(Result(sendMicros: ring[i].sendMicros, size: ring[i].size, arrivalMicros: arrival, probe: ring[i].probe, late: arrival != nil && late))
        }
        return unknown
    }
}
