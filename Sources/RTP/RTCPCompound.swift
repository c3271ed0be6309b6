import NetworkCore

/// A compound RTCP packet, checked whole and then read in place: its packets come out as
/// ``RTCPPacketView``s whose lists (report blocks, NACKed sequence numbers, SDES chunks,
/// transport-wide feedback) are decoded from the datagram as they are iterated. The
/// transport thread reads every RTCP datagram this way, with no allocation;
/// ``RTCPPacket/parseCompound(_:)`` copies the views out.
///
/// A packet that does not parse rejects the whole compound before any part is handed out,
/// as ``RTCPPacket/parseCompound(_:)`` does.
public struct RTCPCompound: Sequence, Sendable {
    let bytes: [UInt8]

    /// Checks every packet of `bytes` (the same checks as ``RTCPPacket/parseCompound(_:)``).
    public init(parsing bytes: [UInt8]) throws(RTPParseError) {
        self.bytes = bytes
        var it = Iterator(bytes: bytes)
        while try it.parseNext() != nil {}
    }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }

    /// Owned copies of the packets.
    static func packets(_ compound: RTCPCompound) -> [RTCPPacket] { compound.map(\.owned) }

    public struct Iterator: IteratorProtocol {
        let bytes: [UInt8]
        var offset = 0

        /// Every packet parsed when the compound was built: this cannot fail.
        public mutating func next() -> RTCPPacketView? { (try? parseNext()) ?? nil }

        mutating func parseNext() throws(RTPParseError) -> RTCPPacketView? {
            guard offset < bytes.count else { return nil }
            guard bytes.count - offset >= 4 else { throw RTPParseError("RTCP header truncated: \(bytes.count - offset) < 4 bytes") }
            guard bytes[offset] >> 6 == 2 else { throw RTPParseError("RTCP version \(bytes[offset] >> 6), expected 2") }
            let count = bytes[offset] & 0x1F
            let type = bytes[offset + 1]
            let length = (Int(bytes.readU16(at: offset + 2)) + 1) * 4
            guard offset + length <= bytes.count else { throw RTPParseError("RTCP type \(type) length \(length) overruns \(bytes.count - offset) bytes") }
            var r = ByteReader(bytes, offset: offset + 4, end: offset + length)
            if bytes[offset] & 0x20 != 0 {
                let pad = Int(bytes[offset + length - 1])
                guard pad <= length - 4 else { throw RTPParseError("RTCP padding \(pad) exceeds packet") }
                r = ByteReader(bytes, offset: offset + 4, end: offset + length - pad)
            }
            let view = try RTCPPacketView(type: type, count: count, reader: &r)
            offset += length
            return view
        }
    }
}

/// One packet of an ``RTCPCompound``, read in place.
public enum RTCPPacketView: Sendable {
    case senderReport(ssrc: UInt32, ntp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32, reports: ReceptionReports)
    case receiverReport(ssrc: UInt32, reports: ReceptionReports)
    case sourceDescription(SourceDescriptionChunks)
    /// Generic NACK (RTPFB FMT 1): the lost sequence numbers.
    case nack(sender: UInt32, media: UInt32, lost: NACKList)
    case transportFeedback(TransportFeedbackView)
    /// The others (PLI, FIR, REMB, BYE, types this stack does not interpret), parsed whole:
    /// rare, and but for BYE's and FIR's lists small.
    case parsed(RTCPPacket)

    /// This packet as an ``RTCPPacket`` (lists copied out).
    public var owned: RTCPPacket {
        switch self {
        case let .senderReport(ssrc, ntp, ts, pc, oc, reports):
            return .senderReport(ssrc: ssrc, ntp: ntp, rtpTimestamp: ts, packetCount: pc, octetCount: oc, reports: Array(reports))
        case let .receiverReport(ssrc, reports): return .receiverReport(ssrc: ssrc, reports: Array(reports))
        case let .sourceDescription(chunks): return .sourceDescription(Array(chunks))
        case let .nack(sender, media, lost): return .nack(sender: sender, media: media, lost: Array(lost))
        case let .transportFeedback(fb): return .transportFeedback(TransportFeedback(fb))
        case let .parsed(p): return p
        }
    }

    init(type: UInt8, count: UInt8, reader r: inout ByteReader) throws(RTPParseError) {
        func fail(_ what: String) -> RTPParseError { RTPParseError("RTCP \(what) truncated") }
        switch type {
        case 200:
            guard let ssrc = r.u32(), let ntp = r.u64(), let ts = r.u32(), let pc = r.u32(), let oc = r.u32() else { throw fail("SR") }
            let reports = ReceptionReports(bytes: r.bytes, start: r.offset, count: Int(count))
            guard r.skip(Int(count) * ReceptionReports.blockSize) else { throw fail("SR report block") }
            self = .senderReport(ssrc: ssrc, ntp: ntp, rtpTimestamp: ts, packetCount: pc, octetCount: oc, reports: reports)
        case 201:
            guard let ssrc = r.u32() else { throw fail("RR") }
            let reports = ReceptionReports(bytes: r.bytes, start: r.offset, count: Int(count))
            guard r.skip(Int(count) * ReceptionReports.blockSize) else { throw fail("RR report block") }
            self = .receiverReport(ssrc: ssrc, reports: reports)
        case 202:
            let chunks = SourceDescriptionChunks(bytes: r.bytes, start: r.offset, end: r.end, count: Int(count))
            for _ in 0..<count { _ = try SourceDescriptionChunks.chunk(&r) }
            self = .sourceDescription(chunks)
        case 203:
            var ssrcs: [UInt32] = []
            for _ in 0..<count { guard let s = r.u32() else { throw fail("BYE") }; ssrcs.append(s) }
            var reason: String? = nil
            if let len = r.u8(), let text = r.take(Int(len)) { reason = String(decoding: text, as: UTF8.self) }
            self = .parsed(.bye(ssrcs: ssrcs, reason: reason))
        case 205:
            guard let sender = r.u32(), let media = r.u32() else { throw fail("RTPFB") }
            if count == 1 {
                self = .nack(sender: sender, media: media, lost: NACKList(bytes: r.bytes, start: r.offset, end: r.end))
            } else if count == 15 {
                self = .transportFeedback(try TransportFeedbackView(senderSSRC: sender, mediaSSRC: media, reader: &r))
            } else {
                self = .parsed(.other(type: type, count: count))
            }
        case 206:
            guard let sender = r.u32(), let media = r.u32() else { throw fail("PSFB") }
            switch count {
            case 1: self = .parsed(.pli(sender: sender, media: media))
            case 4:
                var entries: [(ssrc: UInt32, sequence: UInt8)] = []
                while r.remaining >= 8 {
                    let s = r.u32()!, seq = r.u8()!
                    _ = r.skip(3)
                    entries.append((s, seq))
                }
                self = .parsed(.fir(sender: sender, entries: entries))
            case 15:
                guard let magic = r.u32(), magic == 0x5245_4D42, let n = r.u8(), let expMant = r.u24() else {
                    self = .parsed(.other(type: type, count: count))
                    return
                }
                let exp = expMant >> 18, mantissa = UInt64(expMant & 0x3FFFF)
                var ssrcs: [UInt32] = []
                for _ in 0..<n { guard let s = r.u32() else { throw fail("REMB") }; ssrcs.append(s) }
                self = .parsed(.remb(sender: sender, bitrate: mantissa << exp, ssrcs: ssrcs))
            default: self = .parsed(.other(type: type, count: count))
            }
        default:
            self = .parsed(.other(type: type, count: count))
        }
    }
}

/// The report blocks of an SR or RR, read in place.
public struct ReceptionReports: Sequence, Sendable {
    static let blockSize = 24
    let bytes: [UInt8]
    let start: Int
    public let count: Int

    public struct Iterator: IteratorProtocol {
        var reader: ByteReader
        var left: Int
        public mutating func next() -> ReceptionReport? {
            guard left > 0 else { return nil }
            left -= 1
            return ReceptionReport(reader: &reader)
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(reader: ByteReader(bytes, offset: start, end: start + count * Self.blockSize), left: count)
    }
    public var underestimatedCount: Int { count }
}

/// The sequence numbers a generic NACK reports lost, decoded from its (PID, BLP) pairs as
/// they are iterated.
public struct NACKList: Sequence, Sendable {
    let bytes: [UInt8]
    let start: Int
    let end: Int

    public struct Iterator: IteratorProtocol {
        var reader: ByteReader
        var pid: UInt16 = 0
        var blp: UInt16 = 0
        /// The next bit of `blp` to look at; 16: the pair is done, -1: its PID is next.
        var bit = 16

        public mutating func next() -> UInt16? {
            while true {
                if bit < 0 { bit = 0; return pid }
                while bit < 16 {
                    defer { bit += 1 }
                    if blp & (1 << bit) != 0 { return pid &+ UInt16(bit + 1) }
                }
                guard reader.remaining >= 4, let p = reader.u16(), let b = reader.u16() else { return nil }
                pid = p; blp = b; bit = -1
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(reader: ByteReader(bytes, offset: start, end: end)) }
}

/// The chunks of an SDES packet, read in place: (SSRC, CNAME) pairs, the CNAME empty when
/// the chunk has none.
public struct SourceDescriptionChunks: Sequence, Sendable {
    let bytes: [UInt8]
    let start: Int
    let end: Int
    let count: Int

    /// Reads one chunk: its SSRC and where its (last) CNAME item's text is.
    static func chunk(_ r: inout ByteReader) throws(RTPParseError) -> (ssrc: UInt32, cname: Range<Int>?) {
        func fail(_ what: String) -> RTPParseError { RTPParseError("RTCP \(what) truncated") }
        guard let ssrc = r.u32() else { throw fail("SDES chunk") }
        var cname: Range<Int>? = nil
        let chunkStart = r.offset - 4
        while true {
            guard let itemType = r.u8() else { throw fail("SDES item") }
            if itemType == 0 { break }
            guard let len = r.u8(), let text = r.take(Int(len)) else { throw fail("SDES item") }
            if itemType == 1 { cname = text.indices }
        }
        // Chunks are padded to a 32-bit boundary (a packet may end before it: its
        // padding field can cut the chunk anywhere; reading stops at the end).
        while (r.offset - chunkStart) % 4 != 0, r.u8() != nil {}
        return (ssrc, cname)
    }

    public struct Iterator: IteratorProtocol {
        var reader: ByteReader
        var left: Int
        public mutating func next() -> (ssrc: UInt32, cname: String)? {
            guard left > 0, let c = try? SourceDescriptionChunks.chunk(&reader) else { return nil }
            left -= 1
            return (c.ssrc, c.cname.map { String(decoding: reader.bytes[$0], as: UTF8.self) } ?? "")
        }
    }

    public func makeIterator() -> Iterator { Iterator(reader: ByteReader(bytes, offset: start, end: end), left: count) }
}
