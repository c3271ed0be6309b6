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

    @Test func garbageDatagramsDoNotBreakAHandshakeInProgress() throws {
        let a = try DTLSCertificate.generate(), b = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(context: DTLSContext(certificate: a), client: true, remoteFingerprint: ("sha-256", b.sha256))
        _ = client.start()
        _ = client.handle(datagram: [22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3])
        #expect(client.state != .connected)
    }
}
