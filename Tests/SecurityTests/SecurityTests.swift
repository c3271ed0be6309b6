import Testing
@testable import DTLS
@testable import SRTP
#if canImport(Glibc)
import Glibc
#endif

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(s.filter { !$0.isWhitespace })
    while chars.count >= 2 { out.append(UInt8(String(chars[0..<2]), radix: 16)!); chars.removeFirst(2) }
    return out
}

/// RFC 3711 (AES-CM, HMAC-SHA1-80) known-answer vectors, as libsrtp's own driver uses them.
@Suite struct SRTPTests {
    static let key = hex("e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6")
    static let rtpPlain = hex("800f1234decafbadcafebabe abababababababababababababababab")
    static let rtpCipher = hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb")
    static let rtcpPlain = hex("81c8000bcafebabe abababababababababababababababab")
    static let rtcpCipher = hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001993e08cd54d6c1230798")

    @Test func rtpKnownAnswer() throws {
        let tx = try SRTPSession(suite: .aes128CmHmacSha1_80, keyAndSalt: Self.key, inbound: false)
        var p = Self.rtpPlain
        try tx.protectRTP(&p)
        #expect(p == Self.rtpCipher)
        let rx = try SRTPSession(suite: .aes128CmHmacSha1_80, keyAndSalt: Self.key, inbound: true)
        var c = Self.rtpCipher
        try rx.unprotectRTP(&c)
        #expect(c == Self.rtpPlain)
    }

    @Test func rtcpKnownAnswer() throws {
        let tx = try SRTPSession(suite: .aes128CmHmacSha1_80, keyAndSalt: Self.key, inbound: false)
        var p = Self.rtcpPlain
        try tx.protectRTCP(&p)
        #expect(p == Self.rtcpCipher)
        let rx = try SRTPSession(suite: .aes128CmHmacSha1_80, keyAndSalt: Self.key, inbound: true)
        var c = Self.rtcpCipher
        try rx.unprotectRTCP(&c)
        #expect(c == Self.rtcpPlain)
    }

    @Test(arguments: [SRTPSuite.aes128CmHmacSha1_80, .aeadAes128Gcm])
    func roundTripAndTamperDetection(suite: SRTPSuite) throws {
        let key = (0..<suite.keyAndSaltLength).map { UInt8($0 * 3) }
        let tx = try SRTPSession(suite: suite, keyAndSalt: key, inbound: false)
        let rx = try SRTPSession(suite: suite, keyAndSalt: key, inbound: true)
        var p = Self.rtpPlain
        try tx.protectRTP(&p)
        #expect(p != Self.rtpPlain)
        var tampered = p
        tampered[14] ^= 1
        #expect(throws: SRTPError.self) { try rx.unprotectRTP(&tampered) }
        try rx.unprotectRTP(&p)
        #expect(p == Self.rtpPlain)
        // The same packet again is a replay.
        var again = Self.rtpPlain
        try tx.protectRTP(&again)
        #expect(throws: SRTPError.self) { try rx.unprotectRTP(&again) }
    }

    @Test func wrongKeyLengthIsRefused() {
        #expect(throws: SRTPError.self) { try SRTPSession(suite: .aeadAes128Gcm, keyAndSalt: [1, 2, 3], inbound: true) }
    }
}

@Suite struct DTLSTests {
    /// Runs a handshake between two endpoints over in-memory datagrams.
    static func handshake(_ client: DTLSEndpoint, _ server: DTLSEndpoint) {
        var toServer = client.start()
        var toClient: [[UInt8]] = []
        for _ in 0..<20 {
            for d in toServer { toClient += server.handle(datagram: d) }
            toServer = []
            for d in toClient { toServer += client.handle(datagram: d) }
            toClient = []
            if toServer.isEmpty && toClient.isEmpty { break }
        }
    }

    @Test func handshakeVerifiesFingerprintsAndExportsMatchingSRTPKeys() throws {
        let a = try DTLSCertificate.generate(), b = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(context: DTLSContext(certificate: a), client: true, remoteFingerprint: ("sha-256", b.sha256))
        let server = try DTLSEndpoint(context: DTLSContext(certificate: b), client: false, remoteFingerprint: ("sha-256", a.sha256))
        Self.handshake(client, server)
        #expect(client.state == .connected)
        #expect(server.state == .connected)
        let ck = try #require(client.srtpKeys()), sk = try #require(server.srtpKeys())
        #expect(ck.profile == sk.profile)
        #expect(ck.localKeyAndSalt == sk.remoteKeyAndSalt)
        #expect(ck.remoteKeyAndSalt == sk.localKeyAndSalt)
        #expect(ck.localKeyAndSalt != ck.remoteKeyAndSalt)
        // close_notify reaches the other side.
        for d in client.close() { _ = server.handle(datagram: d) }
        #expect(server.state == .closed)
    }

    @Test func aPeerWhoseCertificateDoesNotMatchTheFingerprintIsRefused() throws {
        let a = try DTLSCertificate.generate(), b = try DTLSCertificate.generate(), mallory = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(context: DTLSContext(certificate: a), client: true, remoteFingerprint: ("sha-256", b.sha256))
        let server = try DTLSEndpoint(context: DTLSContext(certificate: mallory), client: false, remoteFingerprint: ("sha-256", a.sha256))
        Self.handshake(client, server)
        guard case .failed(let reason) = client.state else {
            Issue.record("client accepted a certificate it had not been told about: \(client.state)")
            return
        }
        #expect(reason.contains("does not match"))
        #expect(client.srtpKeys() == nil)
    }

    @Test func identityIsCreatedOnceWithMode0600AndReloaded() throws {
        let dir = "/tmp/videophone-identity-\(getpid())-\(Int.random(in: 0...1_000_000))"
        mkdir(dir, 0o700)
        defer { unlink(dir + "/identity.pem"); rmdir(dir) }
        let (first, created) = try DTLSCertificate.loadOrCreate(path: dir + "/identity.pem")
        #expect(created)
        var st = stat()
        stat(dir + "/identity.pem", &st)
        #expect(st.st_mode & 0o777 == 0o600)
        let (second, createdAgain) = try DTLSCertificate.loadOrCreate(path: dir + "/identity.pem")
        #expect(!createdAgain)
        #expect(first.fingerprint == second.fingerprint)
        #expect(first.fingerprint.count == 32 * 3 - 1)
    }

    /// Bytes that look random but are the same every run.
    static func noise(_ count: Int, seed: UInt32, in range: ClosedRange<UInt8> = 0...255) -> [UInt8] {
        var x = seed
        return (0..<count).map { _ in
            x = x &* 1_664_525 &+ 1_013_904_223
            return UInt8(Int(range.lowerBound) + Int(x >> 24) % (Int(range.upperBound) - Int(range.lowerBound) + 1))
        }
    }

    /// Datagrams an off-path sender can make without keys; RFC 6347 §4.1.2.7: invalid
    /// records are discarded.
    static let garbage: [(String, [UInt8])] = [
        ("handshake record too short for a handshake header", [22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]),
        ("record length past the datagram", [22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0x40, 0, 1, 2, 3]),
        ("truncated record header", [22, 0xfe, 0xfd, 0, 0]),
        ("TLS, not DTLS, version", [22, 0x03, 0x03] + [UInt8](repeating: 0, count: 8) + [0, 4, 1, 0, 0, 0]),
        ("unknown content type", [25, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 7, 7]),
        ("epoch 1 application data, no keys", [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 32] + noise(32, seed: 1)),
        ("handshake content type, then noise", [22] + noise(300, seed: 2)),
        ("noise in the DTLS range", noise(64, seed: 3, in: 20...63)),
        ("empty datagram", []),
    ]

    /// Each kind of garbage arrives at both ends before and between every flight; the
    /// handshake still completes, with the same SRTP keys on both sides.
    @Test(arguments: 0..<DTLSTests.garbage.count)
    func garbageDatagramsDoNotBreakAHandshakeInProgress(_ kind: Int) throws {
        let (what, datagram) = Self.garbage[kind]
        let a = try DTLSCertificate.generate(), b = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(context: DTLSContext(certificate: a), client: true, remoteFingerprint: ("sha-256", b.sha256))
        let server = try DTLSEndpoint(context: DTLSContext(certificate: b), client: false, remoteFingerprint: ("sha-256", a.sha256))
        var toServer = client.start()
        var toClient: [[UInt8]] = []
        var flights = 0
        for _ in 0..<20 {
            _ = server.handle(datagram: datagram)
            for d in toServer { toClient += server.handle(datagram: d) }
            toServer = []
            _ = client.handle(datagram: datagram)
            for d in toClient { toServer += client.handle(datagram: d) }
            toClient = []
            flights += 1
            if toServer.isEmpty && toClient.isEmpty { break }
        }
        #expect(flights >= 2, "\(what): the handshake stopped at once")
        #expect(client.state == .connected, "\(what): client \(client.state)")
        #expect(server.state == .connected, "\(what): server \(server.state)")
        let ck = try #require(client.srtpKeys(), "\(what): no keys"), sk = try #require(server.srtpKeys(), "\(what): no keys")
        #expect(ck.localKeyAndSalt == sk.remoteKeyAndSalt)
        #expect(ck.remoteKeyAndSalt == sk.localKeyAndSalt)
        // Garbage after the handshake leaves the association standing.
        _ = client.handle(datagram: datagram)
        #expect(client.state == .connected, "\(what): after the handshake, client \(client.state)")
    }
}
