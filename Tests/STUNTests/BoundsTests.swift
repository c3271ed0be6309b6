import NetworkCore
import Testing
@testable import STUN

/// RFC 8489 §14.5: only FINGERPRINT may follow MESSAGE-INTEGRITY; anything else there is
/// outside the MAC and must be ignored.
@Suite struct STUNIntegrityBoundaryTests {
    static let key = Array("a-password".utf8)

    /// A signed Binding success response with `extra` appended after MESSAGE-INTEGRITY (and
    /// the length fixed up), then FINGERPRINT.
    static func signedThenAppended(_ extra: [(UInt16, [UInt8])]) -> [UInt8] {
        var m = STUNMessage(method: .binding, class: .successResponse)
        m.addXORAddress(STUNAttributeType.xorMappedAddress, TransportAddress(host: "192.0.2.1", port: 4000)!)
        var bytes = m.serialize(integrityKey: key, fingerprint: false)
        for (t, v) in extra {
            bytes.appendU16(t)
            bytes.appendU16(UInt16(v.count))
            bytes += v
            while bytes.count % 4 != 0 { bytes.append(0) }
        }
        // FINGERPRINT last, over everything before it.
        bytes.writeU16(UInt16(bytes.count - 20 + 8), at: 2)
        let crc = CRC32.checksum(bytes) ^ 0x5354_554E
        bytes.appendU16(STUNAttributeType.fingerprint)
        bytes.appendU16(4)
        bytes.appendU32(crc)
        return bytes
    }

    @Test func attributesAfterMessageIntegrityAreIgnored() throws {
        let spoofed = STUNMessage.xorAddressValue(TransportAddress(host: "203.0.113.66", port: 6666)!, transactionID: Array(repeating: 0, count: 12))
        let bytes = Self.signedThenAppended([(STUNAttributeType.username, Array("evil:user".utf8)),
                                             (STUNAttributeType.errorCode, [0, 0, 4, 1]),
                                             (STUNAttributeType.useCandidate, []),
                                             (STUNAttributeType.xorRelayedAddress, spoofed)])
        let m = try STUNMessage(parsing: bytes)
        // The MAC still verifies (it covers what precedes it) ...
        #expect(m.verifyIntegrity(key: Self.key))
        // ... and nothing after it is visible.
        #expect(m.username == nil)
        #expect(m.errorCode == nil)
        #expect(!m.useCandidate)
        #expect(m.attribute(STUNAttributeType.xorRelayedAddress) == nil)
        #expect(m.xorMappedAddress == TransportAddress(host: "192.0.2.1", port: 4000)!)
        #expect(m.attribute(STUNAttributeType.fingerprint) != nil)
    }

    @Test func aSecondMessageIntegrityDoesNotReplaceTheFirst() throws {
        let bytes = Self.signedThenAppended([(STUNAttributeType.messageIntegrity, Array(repeating: 0xAB, count: 20))])
        let m = try STUNMessage(parsing: bytes)
        #expect(m.verifyIntegrity(key: Self.key))
        #expect(m.attributes.filter { $0.type == STUNAttributeType.messageIntegrity }.count == 1)
    }

    @Test func attributesBeforeIntegrityStillCount() throws {
        var m = STUNMessage(method: .binding, class: .request)
        m.add(STUNAttributeType.username, Array("a:b".utf8))
        let parsed = try STUNMessage(parsing: m.serialize(integrityKey: Self.key))
        #expect(parsed.username == "a:b")
        #expect(parsed.verifyIntegrity(key: Self.key))
    }
}

/// FINGERPRINT's CRC-32 (ISO-HDLC) gives the same value whichever way the bytes come.
@Suite struct CRC32Tests {
    @Test func checkValueForEveryKindOfCollection() {
        let bytes = Array("123456789".utf8)
        // The catalogue's check value for CRC-32/ISO-HDLC.
        #expect(CRC32.checksum(bytes) == 0xCBF4_3926)
        #expect(CRC32.checksum((Array("xx".utf8) + bytes)[2...]) == 0xCBF4_3926)
        #expect(bytes.withUnsafeBytes { CRC32.checksum($0) } == 0xCBF4_3926)
        // No contiguous storage: the element-by-element path.
        #expect(CRC32.checksum(bytes.lazy.map { $0 }) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }
}
