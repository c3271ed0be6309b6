import COpenSSL
import NetworkCore

/// Why a STUN message was refused; names the part that was wrong.
public struct STUNError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// STUN message classes (RFC 8489 §5).
public enum STUNClass: UInt16, Sendable {
    case request = 0x000, indication = 0x010, successResponse = 0x100, errorResponse = 0x110
}

/// STUN methods used here (RFC 8489, RFC 8656).
public enum STUNMethod: UInt16, Sendable {
    case binding = 0x001, allocate = 0x003, refresh = 0x004, send = 0x006, data = 0x007
    case createPermission = 0x008, channelBind = 0x009
}

/// Attribute types (RFC 8489 §18.3, RFC 8445 §16.1, RFC 8656 §18).
public enum STUNAttributeType {
    public static let mappedAddress: UInt16 = 0x0001
    public static let username: UInt16 = 0x0006
    public static let messageIntegrity: UInt16 = 0x0008
    public static let errorCode: UInt16 = 0x0009
    public static let unknownAttributes: UInt16 = 0x000A
    public static let channelNumber: UInt16 = 0x000C
    public static let lifetime: UInt16 = 0x000D
    public static let xorPeerAddress: UInt16 = 0x0012
    public static let data: UInt16 = 0x0013
    public static let realm: UInt16 = 0x0014
    public static let nonce: UInt16 = 0x0015
    public static let xorRelayedAddress: UInt16 = 0x0016
    public static let requestedTransport: UInt16 = 0x0019
    public static let xorMappedAddress: UInt16 = 0x0020
    public static let priority: UInt16 = 0x0024
    public static let useCandidate: UInt16 = 0x0025
    public static let software: UInt16 = 0x8022
    public static let fingerprint: UInt16 = 0x8028
    public static let iceControlled: UInt16 = 0x8029
    public static let iceControlling: UInt16 = 0x802A
}

/// A STUN message (RFC 8489 §5):
///
/// ```
///  0                   1                   2                   3
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |0 0|     STUN Message Type     |         Message Length        |
/// |                         Magic Cookie                          |
/// |                     Transaction ID (96 bits)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// Attributes are kept in order as raw (type, value) pairs; typed accessors decode them.
public struct STUNMessage: Sendable, Equatable {
    public static let magicCookie: UInt32 = 0x2112_A442
    public var method: UInt16
    public var messageClass: STUNClass
    public var transactionID: [UInt8]
    public var attributes: [(type: UInt16, value: [UInt8])]
    /// Offset of MESSAGE-INTEGRITY in the parsed bytes, for verification.
    private var integrityOffset: Int?
    private var raw: [UInt8] = []

    public static func == (a: STUNMessage, b: STUNMessage) -> Bool {
        a.method == b.method && a.messageClass == b.messageClass && a.transactionID == b.transactionID
            && a.attributes.count == b.attributes.count
            && zip(a.attributes, b.attributes).allSatisfy { $0.type == $1.type && $0.value == $1.value }
    }

    public init(method: STUNMethod, class messageClass: STUNClass, transactionID: [UInt8] = secureRandomBytes(12)) {
        self.method = method.rawValue
        self.messageClass = messageClass
        self.transactionID = transactionID
        self.attributes = []
    }

    /// True when the first bytes look like STUN (RFC 7983: first byte 0–3 and the cookie).
    public static func isSTUN(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 20 && bytes[0] < 4 && bytes.readU32(at: 4) == magicCookie
    }

    /// Parses a message; checks FINGERPRINT when present.
    public init(parsing bytes: [UInt8]) throws(STUNError) {
        guard bytes.count >= 20 else { throw STUNError("STUN message too short: \(bytes.count) < 20 bytes") }
        guard bytes[0] & 0xC0 == 0 else { throw STUNError("STUN first two bits not zero") }
        guard bytes.readU32(at: 4) == STUNMessage.magicCookie else { throw STUNError("STUN magic cookie missing") }
        let type = bytes.readU16(at: 0)
        let length = Int(bytes.readU16(at: 2))
        guard length % 4 == 0, 20 + length <= bytes.count else { throw STUNError("STUN length \(length) does not fit \(bytes.count) bytes") }
        let m = type & 0x000F | (type & 0x00E0) >> 1 | (type & 0x3E00) >> 2
        let c = (type & 0x0010) | (type & 0x0100)
        method = m
        messageClass = STUNClass(rawValue: c)!
        transactionID = Array(bytes[8..<20])
        attributes = []
        raw = Array(bytes[0..<20 + length])
        var offset = 20
        while offset < 20 + length {
            guard offset + 4 <= 20 + length else { throw STUNError("STUN attribute header truncated at \(offset)") }
            let t = bytes.readU16(at: offset)
            let l = Int(bytes.readU16(at: offset + 2))
            guard offset + 4 + l <= 20 + length else { throw STUNError("STUN attribute 0x\(String(t, radix: 16)) of \(l) bytes overruns message") }
            // Only FINGERPRINT may follow MESSAGE-INTEGRITY; anything else after it is not
            // covered by the MAC, so it is ignored (RFC 8489 §14.5).
            let afterIntegrity = integrityOffset != nil && t != STUNAttributeType.fingerprint
            if t == STUNAttributeType.messageIntegrity && integrityOffset == nil { integrityOffset = offset }
            if t == STUNAttributeType.fingerprint {
                guard l == 4 else { throw STUNError("STUN FINGERPRINT has \(l) bytes, expected 4") }
                let expected = CRC32.checksum(bytes[0..<offset]) ^ 0x5354_554E
                guard bytes.readU32(at: offset + 4) == expected else { throw STUNError("STUN FINGERPRINT does not match") }
            }
            if !afterIntegrity { attributes.append((t, Array(bytes[offset + 4..<offset + 4 + l]))) }
            offset += 4 + ((l + 3) & ~3)
        }
    }

    public func attribute(_ type: UInt16) -> [UInt8]? {
        attributes.first { $0.type == type }?.value
    }

    public mutating func add(_ type: UInt16, _ value: [UInt8]) {
        attributes.append((type, value))
    }

    public mutating func addXORAddress(_ type: UInt16, _ address: TransportAddress) {
        add(type, STUNMessage.xorAddressValue(address, transactionID: transactionID))
    }

    public var username: String? { attribute(STUNAttributeType.username).map { String(decoding: $0, as: UTF8.self) } }
    public var priority: UInt32? { attribute(STUNAttributeType.priority).flatMap { $0.count == 4 ? $0.readU32(at: 0) : nil } }
    public var useCandidate: Bool { attribute(STUNAttributeType.useCandidate) != nil }
    public var iceControlling: UInt64? { attribute(STUNAttributeType.iceControlling).flatMap(STUNMessage.u64) }
    public var iceControlled: UInt64? { attribute(STUNAttributeType.iceControlled).flatMap(STUNMessage.u64) }
    public var xorMappedAddress: TransportAddress? { xorAddress(STUNAttributeType.xorMappedAddress) }

    /// The (code, reason) of an ERROR-CODE attribute.
    public var errorCode: (code: Int, reason: String)? {
        guard let v = attribute(STUNAttributeType.errorCode), v.count >= 4 else { return nil }
        return (Int(v[2] & 0x7) * 100 + Int(v[3]), String(decoding: v[4...], as: UTF8.self))
    }

    public mutating func addErrorCode(_ code: Int, _ reason: String) {
        var v: [UInt8] = [0, 0, UInt8(code / 100), UInt8(code % 100)]
        v.append(contentsOf: reason.utf8)
        add(STUNAttributeType.errorCode, v)
    }

    public func xorAddress(_ type: UInt16) -> TransportAddress? {
        guard let v = attribute(type), v.count >= 8 else { return nil }
        let port = v.readU16(at: 2) ^ UInt16(STUNMessage.magicCookie >> 16)
        var key: [UInt8] = []
        key.appendU32(STUNMessage.magicCookie)
        key += transactionID
        switch v[1] {
        case 1: return TransportAddress(ip: (0..<4).map { v[4 + $0] ^ key[$0] }, port: port)
        case 2 where v.count >= 20: return TransportAddress(ip: (0..<16).map { v[4 + $0] ^ key[$0] }, port: port)
        default: return nil
        }
    }

    static func xorAddressValue(_ a: TransportAddress, transactionID: [UInt8]) -> [UInt8] {
        var key: [UInt8] = []
        key.appendU32(magicCookie)
        key += transactionID
        var v: [UInt8] = [0, a.family == .ipv4 ? 1 : 2]
        v.appendU16(a.port ^ UInt16(magicCookie >> 16))
        for (i, b) in a.ip.enumerated() { v.append(b ^ key[i]) }
        return v
    }

    static func u64(_ v: [UInt8]) -> UInt64? {
        guard v.count == 8 else { return nil }
        var r = ByteReader(v)
        return r.u64()
    }

    /// Serializes; adds MESSAGE-INTEGRITY (HMAC-SHA1 with `integrityKey`) and FINGERPRINT
    /// when asked, in that order, as RFC 8489 §14.5 and §14.7 require.
    public func serialize(integrityKey: [UInt8]? = nil, fingerprint: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        let type = (method & 0x000F) | (method & 0x0070) << 1 | (method & 0x0F80) << 2 | messageClass.rawValue
        out.appendU16(type)
        out.appendU16(0)
        out.appendU32(STUNMessage.magicCookie)
        out += transactionID
        for a in attributes {
            out.appendU16(a.type)
            out.appendU16(UInt16(a.value.count))
            out += a.value
            while out.count % 4 != 0 { out.append(0) }
        }
        if let key = integrityKey {
            out.writeU16(UInt16(out.count - 20 + 24), at: 2)
            let mac = hmacSHA1(key: key, data: out[...])
            out.appendU16(STUNAttributeType.messageIntegrity)
            out.appendU16(20)
            out += mac
        }
        if fingerprint {
            out.writeU16(UInt16(out.count - 20 + 8), at: 2)
            let crc = CRC32.checksum(out) ^ 0x5354_554E
            out.appendU16(STUNAttributeType.fingerprint)
            out.appendU16(4)
            out.appendU32(crc)
        } else {
            out.writeU16(UInt16(out.count - 20), at: 2)
        }
        return out
    }

    /// Checks MESSAGE-INTEGRITY against `key`; false when absent or wrong.
    public func verifyIntegrity(key: [UInt8]) -> Bool {
        guard let offset = integrityOffset, offset + 24 <= raw.count else { return false }
        var prefix = Array(raw[0..<offset])
        // The length field covers everything up to and including MESSAGE-INTEGRITY.
        prefix.writeU16(UInt16(offset - 20 + 24), at: 2)
        let mac = hmacSHA1(key: key, data: prefix[...])
        let got = raw[offset + 4..<offset + 24]
        var diff: UInt8 = 0
        for (a, b) in zip(mac, got) { diff |= a ^ b }
        return diff == 0
    }
}

/// HMAC-SHA1 through OpenSSL.
public func hmacSHA1(key: [UInt8], data: ArraySlice<UInt8>) -> [UInt8] {
    var md = [UInt8](repeating: 0, count: 20)
    var len: UInt32 = 20
    key.withUnsafeBytes { k in
        data.withUnsafeBytes { d in
            _ = HMAC(EVP_sha1(), k.baseAddress, Int32(key.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &md, &len)
        }
    }
    return md
}

/// The long-term credential key MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
public func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
    let input = Array("\(username):\(realm):\(password)".utf8)
    var md = [UInt8](repeating: 0, count: 16)
    var len: UInt32 = 16
    _ = EVP_Digest(input, input.count, &md, &len, EVP_md5(), nil)
    return md
}
