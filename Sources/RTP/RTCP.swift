import NetworkCore

/// A reception report block (RFC 3550 §6.4.1).
public struct ReceptionReport: Equatable, Sendable {
    public var ssrc: UInt32
    public var fractionLost: UInt8
    /// Cumulative number of packets lost (24-bit signed).
    public var cumulativeLost: Int32
    public var highestSequence: UInt32
    public var jitter: UInt32
    public var lastSR: UInt32
    public var delaySinceLastSR: UInt32

    public init(ssrc: UInt32, fractionLost: UInt8, cumulativeLost: Int32, highestSequence: UInt32,
                jitter: UInt32, lastSR: UInt32, delaySinceLastSR: UInt32) {
        self.ssrc = ssrc; self.fractionLost = fractionLost; self.cumulativeLost = cumulativeLost
        self.highestSequence = highestSequence; self.jitter = jitter
        self.lastSR = lastSR; self.delaySinceLastSR = delaySinceLastSR
    }

    fileprivate func serialize(into b: inout [UInt8]) {
        b.appendU32(ssrc)
        b.append(fractionLost)
        b.appendU24(UInt32(bitPattern: cumulativeLost) & 0xFF_FFFF)
        b.appendU32(highestSequence); b.appendU32(jitter); b.appendU32(lastSR); b.appendU32(delaySinceLastSR)
    }

    init?(reader r: inout ByteReader) {
        guard let ssrc = r.u32(), let fl = r.u8(), let lost = r.u24(), let hs = r.u32(),
              let j = r.u32(), let lsr = r.u32(), let dlsr = r.u32() else { return nil }
        self.ssrc = ssrc; fractionLost = fl
        cumulativeLost = lost & 0x80_0000 != 0 ? Int32(bitPattern: lost | 0xFF00_0000) : Int32(lost)
        highestSequence = hs; jitter = j; lastSR = lsr; delaySinceLastSR = dlsr
    }
}

/// One RTCP packet of a compound packet (RFC 3550 §6, RFC 4585 §6, RFC 5104 §4.3.1).
public enum RTCPPacket: Equatable, Sendable {
    case senderReport(ssrc: UInt32, ntp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32, reports: [ReceptionReport])
    case receiverReport(ssrc: UInt32, reports: [ReceptionReport])
    /// SDES with one CNAME item per chunk.
    case sourceDescription([(ssrc: UInt32, cname: String)])
    case bye(ssrcs: [UInt32], reason: String?)
    /// Generic NACK (RTPFB FMT 1): the lost sequence numbers.
    case nack(sender: UInt32, media: UInt32, lost: [UInt16])
    /// Picture Loss Indication (PSFB FMT 1).
    case pli(sender: UInt32, media: UInt32)
    /// Full Intra Request (PSFB FMT 4).
    case fir(sender: UInt32, entries: [(ssrc: UInt32, sequence: UInt8)])
    /// Receiver Estimated Maximum Bitrate (PSFB FMT 15, "REMB").
    case remb(sender: UInt32, bitrate: UInt64, ssrcs: [UInt32])
    /// Transport-wide congestion control feedback (RTPFB FMT 15).
    case transportFeedback(TransportFeedback)
    /// A packet type this stack does not interpret (kept so compound parsing goes on).
    case other(type: UInt8, count: UInt8)

    public static func == (a: RTCPPacket, b: RTCPPacket) -> Bool {
        switch (a, b) {
        case let (.senderReport(a1, a2, a3, a4, a5, a6), .senderReport(b1, b2, b3, b4, b5, b6)):
            return a1 == b1 && a2 == b2 && a3 == b3 && a4 == b4 && a5 == b5 && a6 == b6
        case let (.receiverReport(a1, a2), .receiverReport(b1, b2)): return a1 == b1 && a2 == b2
        case let (.sourceDescription(x), .sourceDescription(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.ssrc == $1.ssrc && $0.cname == $1.cname }
        case let (.bye(a1, a2), .bye(b1, b2)): return a1 == b1 && a2 == b2
        case let (.nack(a1, a2, a3), .nack(b1, b2, b3)): return a1 == b1 && a2 == b2 && a3 == b3
        case let (.pli(a1, a2), .pli(b1, b2)): return a1 == b1 && a2 == b2
        case let (.fir(a1, x), .fir(b1, y)):
            return a1 == b1 && x.count == y.count && zip(x, y).allSatisfy { $0.ssrc == $1.ssrc && $0.sequence == $1.sequence }
        case let (.remb(a1, a2, a3), .remb(b1, b2, b3)): return a1 == b1 && a2 == b2 && a3 == b3
        case let (.other(a1, a2), .other(b1, b2)): return a1 == b1 && a2 == b2
        case let (.transportFeedback(x), .transportFeedback(y)): return x == y
        default: return false
        }
    }

    /// Parses a compound RTCP packet into its parts (copies of ``RTCPCompound``'s views).
    public static func parseCompound(_ bytes: [UInt8]) throws(RTPParseError) -> [RTCPPacket] {
        RTCPCompound.packets(try RTCPCompound(parsing: bytes))
    }

    /// Appends this packet's wire form to `b`.
    public func serialize(into b: inout [UInt8]) {
        let start = b.count
        func header(_ count: Int, _ type: UInt8) { b.append(0x80 | UInt8(count & 0x1F)); b.append(type); b.appendU16(0) }
        switch self {
        case let .senderReport(ssrc, ntp, ts, pc, oc, reports):
            header(reports.count, 200)
            b.appendU32(ssrc); b.appendU64(ntp); b.appendU32(ts); b.appendU32(pc); b.appendU32(oc)
            for r in reports { r.serialize(into: &b) }
        case let .receiverReport(ssrc, reports):
            header(reports.count, 201)
            b.appendU32(ssrc)
            for r in reports { r.serialize(into: &b) }
        case let .sourceDescription(chunks):
            header(chunks.count, 202)
            for c in chunks {
                let chunkStart = b.count
                b.appendU32(c.ssrc)
                let name = c.cname.utf8.prefix(255)   // a view: no copy
                b.append(1); b.append(UInt8(name.count)); b.append(contentsOf: name)
                b.append(0)
                while (b.count - chunkStart) % 4 != 0 { b.append(0) }
            }
        case let .bye(ssrcs, reason):
            header(ssrcs.count, 203)
            for s in ssrcs { b.appendU32(s) }
            if let reason {
                let text = Array(reason.utf8.prefix(255))
                b.append(UInt8(text.count)); b.append(contentsOf: text)
            }
        case let .nack(sender, media, lost):
            header(1, 205)
            b.appendU32(sender); b.appendU32(media)
            for (pid, blp) in RTCPPacket.nackPairs(lost) { b.appendU16(pid); b.appendU16(blp) }
        case let .pli(sender, media):
            header(1, 206)
            b.appendU32(sender); b.appendU32(media)
        case let .fir(sender, entries):
            header(4, 206)
            b.appendU32(sender); b.appendU32(0)
            for e in entries { b.appendU32(e.ssrc); b.append(e.sequence); b.append(0); b.append(0); b.append(0) }
        case let .remb(sender, bitrate, ssrcs):
            header(15, 206)
            b.appendU32(sender); b.appendU32(0); b.appendU32(0x5245_4D42)
            b.append(UInt8(ssrcs.count))
            var mantissa = bitrate, exp: UInt32 = 0
            while mantissa > 0x3FFFF { mantissa >>= 1; exp += 1 }
            b.appendU24(exp << 18 | UInt32(mantissa))
            for s in ssrcs { b.appendU32(s) }
        case let .transportFeedback(fb):
            var symbols: [TransportFeedback.Symbol] = []
            RTCPPacket.serializeTransportFeedback(sender: fb.senderSSRC, media: fb.mediaSSRC, baseSequence: fb.baseSequence,
                                                  statusCount: fb.statusCount, referenceTime: fb.referenceTime,
                                                  feedbackCount: fb.feedbackCount, received: fb.received, symbols: &symbols, into: &b)
            return
        case .other:
            return
        }
        while (b.count - start) % 4 != 0 { b.append(0) }
        b.writeU16(UInt16((b.count - start) / 4 - 1), at: start + 2)
    }

    /// A transport-wide feedback packet (RTPFB FMT 15) from its fields, appended to `b`;
    /// `symbols` is scratch a caller may keep (``TransportFeedbackGenerator``).
    static func serializeTransportFeedback(sender: UInt32, media: UInt32, baseSequence: UInt16, statusCount: UInt16, referenceTime: Int32,
                                           feedbackCount: UInt8, received: some Collection<(offset: UInt16, ticks: Int64)>,
                                           symbols: inout [TransportFeedback.Symbol], into b: inout [UInt8]) {
        let start = b.count
        b.append(0x80 | 15); b.append(205); b.appendU16(0)
        b.appendU32(sender); b.appendU32(media)
        TransportFeedback.serializeFCI(baseSequence: baseSequence, statusCount: statusCount, referenceTime: referenceTime,
                                       feedbackCount: feedbackCount, received: received, symbols: &symbols, into: &b)
        while (b.count - start) % 4 != 0 { b.append(0) }
        b.writeU16(UInt16((b.count - start) / 4 - 1), at: start + 2)
    }

    /// Packs lost sequence numbers into (PID, BLP) pairs (RFC 4585 §6.2.1).
    static func nackPairs(_ lost: [UInt16]) -> [(UInt16, UInt16)] {
        var pairs: [(UInt16, UInt16)] = []
        for seq in lost {
            if let last = pairs.last {
                let d = SequenceNumber.distance(from: last.0, to: seq)
                if d >= 1 && d <= 16 {
                    pairs[pairs.count - 1].1 |= 1 << (d - 1)
                    continue
                }
            }
            pairs.append((seq, 0))
        }
        return pairs
    }

    /// Serializes several packets as one compound packet.
    public static func compound(_ packets: [RTCPPacket]) -> [UInt8] {
        var out: [UInt8] = []
        for p in packets { p.serialize(into: &out) }
        return out
    }
}
