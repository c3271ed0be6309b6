import NetworkCore

/// The few DNS message shapes mDNS (RFC 6762) needs for ICE `.local` candidates
/// (draft-ietf-mmusic-mdns-ice-candidates): a query for a name's A/AAAA record and the
/// answer carrying the address. No I/O.
public struct MDNSMessage: Equatable, Sendable {
    public struct Question: Equatable, Sendable {
        public var name: String
        public var type: UInt16
        /// The QU bit: the asker wants a unicast reply.
        public var unicastResponse: Bool
    }

    public struct Record: Equatable, Sendable {
        public var name: String
        public var type: UInt16
        public var ttl: UInt32
        public var data: [UInt8]

        /// The address of an A or AAAA record.
        public var address: [UInt8]? {
            (type == MDNSMessage.typeA && data.count == 4) || (type == MDNSMessage.typeAAAA && data.count == 16) ? data : nil
        }
    }

    public static let typeA: UInt16 = 1
    public static let typeAAAA: UInt16 = 28
    public static let port: UInt16 = 5353
    public static let groupIPv4 = TransportAddress(host: "224.0.0.251", port: 5353)!

    public var id: UInt16 = 0
    public var isResponse: Bool
    public var questions: [Question] = []
    public var answers: [Record] = []

    public init(isResponse: Bool, questions: [Question] = [], answers: [Record] = []) {
        self.isResponse = isResponse
        self.questions = questions
        self.answers = answers
    }

    public static func query(_ name: String, type: UInt16 = typeA) -> MDNSMessage {
        MDNSMessage(isResponse: false, questions: [Question(name: name, type: type, unicastResponse: false)])
    }

    public static func answer(_ name: String, address: [UInt8], ttl: UInt32 = 120) -> MDNSMessage {
        MDNSMessage(isResponse: true, answers: [Record(name: name, type: address.count == 4 ? typeA : typeAAAA, ttl: ttl, data: address)])
    }

    public func serialize() -> [UInt8] {
        var b: [UInt8] = []
        b.appendU16(id)
        b.appendU16(isResponse ? 0x8400 : 0)  // QR + AA for responses
        b.appendU16(UInt16(questions.count))
        b.appendU16(UInt16(answers.count))
        b.appendU16(0)
        b.appendU16(0)
        for q in questions {
            MDNSMessage.writeName(q.name, into: &b)
            b.appendU16(q.type)
            b.appendU16(1 | (q.unicastResponse ? 0x8000 : 0))
        }
        for r in answers {
            MDNSMessage.writeName(r.name, into: &b)
            b.appendU16(r.type)
            b.appendU16(0x8001)  // IN, cache-flush: we are the only owner of this name
            b.appendU32(r.ttl)
            b.appendU16(UInt16(r.data.count))
            b += r.data
        }
        return b
    }

    /// Parses a message; nil when malformed (mDNS traffic from others is not our problem).
    public init?(parsing bytes: [UInt8]) {
        var r = ByteReader(bytes)
        guard let id = r.u16(), let flags = r.u16(), let qd = r.u16(), let an = r.u16(), let ns = r.u16(), let ar = r.u16() else { return nil }
        self.id = id
        isResponse = flags & 0x8000 != 0
        var offset = 12
        for _ in 0..<qd {
            guard let (name, next) = MDNSMessage.readName(bytes, at: offset), next + 4 <= bytes.count else { return nil }
            let cls = bytes.readU16(at: next + 2)
            questions.append(Question(name: name, type: bytes.readU16(at: next), unicastResponse: cls & 0x8000 != 0))
            offset = next + 4
        }
        for _ in 0..<(Int(an) + Int(ns) + Int(ar)) {
            guard let (name, next) = MDNSMessage.readName(bytes, at: offset), next + 10 <= bytes.count else { return nil }
            let type = bytes.readU16(at: next)
            let ttl = bytes.readU32(at: next + 4)
            let len = Int(bytes.readU16(at: next + 8))
            guard next + 10 + len <= bytes.count else { return nil }
            answers.append(Record(name: name, type: type, ttl: ttl, data: Array(bytes[(next + 10)..<(next + 10 + len)])))
            offset = next + 10 + len
        }
    }

    static func writeName(_ name: String, into b: inout [UInt8]) {
        for label in name.split(separator: ".") {
            let bytes = Array(label.utf8.prefix(63))
            b.append(UInt8(bytes.count))
            b += bytes
        }
        b.append(0)
    }

    /// Reads a possibly compressed name; returns it (lower case) and the offset after it.
    static func readName(_ bytes: [UInt8], at start: Int) -> (String, Int)? {
        var labels: [String] = []
        var offset = start
        var end: Int? = nil
        var jumps = 0
        while true {
            guard offset < bytes.count else { return nil }
            let len = Int(bytes[offset])
            if len == 0 { offset += 1; break }
            if len & 0xC0 == 0xC0 {
                guard offset + 1 < bytes.count, jumps < 16 else { return nil }
                if end == nil { end = offset + 2 }
                offset = (len & 0x3F) << 8 | Int(bytes[offset + 1])
                jumps += 1
                continue
            }
            guard len <= 63, offset + 1 + len <= bytes.count else { return nil }
            labels.append(String(decoding: bytes[(offset + 1)..<(offset + 1 + len)], as: UTF8.self).lowercased())
            offset += 1 + len
        }
        return (labels.joined(separator: "."), end ?? offset)
    }
}
