import DTLS
import SignedSignalling
import Testing

/// Two identities and a verifier for each; the clock is a number the tests set.
struct Pair {
    let alice = try! DTLSCertificate.generate(commonName: "alice")
    let bob = try! DTLSCertificate.generate(commonName: "bob")
    let mallory = try! DTLSCertificate.generate(commonName: "mallory")

    func message(from c: DTLSCertificate, to: DTLSCertificate, time: Int64, nonce: UInt8 = 1, body: String = "v=0\r\n") -> SignalMessage {
        SignalMessage(kind: .offer, from: c.sha256, to: to.sha256, nonce: [UInt8](repeating: nonce, count: 16), time: time, call: "abc-123", name: "x", body: body)
    }

    func wire(_ m: SignalMessage, by c: DTLSCertificate) -> [UInt8] {
        try! m.encode(certificate: c.der) { try c.sign($0) }
    }

    func bobVerifier() -> SignalVerifier {
        SignalVerifier(me: bob.sha256, pinned: [alice.sha256: "alice"], windowMs: 30_000, replayCapacity: 8)
    }
}

@Suite struct SignalVerifierTests {
    let p = Pair()

    @Test func signedMessageFromPinnedPeerIsAccepted() throws {
        var v = p.bobVerifier()
        let m = p.message(from: p.alice, to: p.bob, time: 1_000_000)
        let r = try v.open(p.wire(m, by: p.alice), nowMs: 1_000_500).get()
        #expect(r.peer == "alice")
        #expect(r.message == m)
    }

    @Test func replayIsRefused() {
        var v = p.bobVerifier()
        let w = p.wire(p.message(from: p.alice, to: p.bob, time: 1_000_000), by: p.alice)
        #expect((try? v.open(w, nowMs: 1_000_000).get()) != nil)
        #expect(v.open(w, nowMs: 1_001_000).refusal == (.replayed(peer: "alice")))
        // Once the window has passed, the timestamp alone refuses it.
        #expect(v.open(w, nowMs: 1_040_000).refusal == (.stale(peer: "alice", skewMs: -40_000)))
    }

    @Test func staleAndFutureTimestampsAreRefused() {
        var v = p.bobVerifier()
        #expect(v.open(p.wire(p.message(from: p.alice, to: p.bob, time: 0), by: p.alice), nowMs: 31_000).refusal == (.stale(peer: "alice", skewMs: -31_000)))
        #expect(v.open(p.wire(p.message(from: p.alice, to: p.bob, time: 100_000), by: p.alice), nowMs: 60_000).refusal == (.stale(peer: "alice", skewMs: 40_000)))
    }

    @Test func alteredBodyFailsTheSignature() {
        var v = p.bobVerifier()
        var w = p.wire(p.message(from: p.alice, to: p.bob, time: 5_000, body: "v=0 hello"), by: p.alice)
        w[w.count - 1] ^= 0x01
        #expect(v.open(w, nowMs: 5_000).refusal == (.badSignature(peer: "alice")))
    }

    @Test func forgeryWithPinnedCertificateButOtherKeyFails() {
        // Mallory carries alice's certificate and fingerprint but can only sign with her own key.
        var v = p.bobVerifier()
        let m = p.message(from: p.alice, to: p.bob, time: 5_000)
        let w = try! m.encode(certificate: p.alice.der) { try p.mallory.sign($0) }
        #expect(v.open(w, nowMs: 5_000).refusal == (.badSignature(peer: "alice")))
    }

    @Test func unpinnedSignerAndWrongRecipientAreRefused() {
        var v = p.bobVerifier()
        let m = p.message(from: p.mallory, to: p.bob, time: 5_000)
        guard case .failure(.unpinned) = v.open(p.wire(m, by: p.mallory), nowMs: 5_000) else { Issue.record("unpinned accepted"); return }
        let toOther = p.message(from: p.alice, to: p.mallory, time: 5_000)
        #expect(v.open(p.wire(toOther, by: p.alice), nowMs: 5_000).refusal == (.notForUs(peer: "alice")))
        // A certificate that is not the claimed sender's.
        let lying = p.message(from: p.alice, to: p.bob, time: 5_000)
        let w = try! lying.encode(certificate: p.mallory.der) { try p.mallory.sign($0) }
        #expect(v.open(w, nowMs: 5_000).refusal == (.wrongSender))
    }

    @Test func replayCacheIsBoundedAndRefusesWhenFullOfLiveNonces() {
        var v = p.bobVerifier()
        for i in 0..<8 {
            #expect((try? v.open(p.wire(p.message(from: p.alice, to: p.bob, time: 10_000, nonce: UInt8(i)), by: p.alice), nowMs: 10_000).get()) != nil)
        }
        #expect(v.open(p.wire(p.message(from: p.alice, to: p.bob, time: 10_000, nonce: 99), by: p.alice), nowMs: 10_000).refusal
                == (.replayCacheFull(peer: "alice")))
        #expect(v.replay.count == 8)
        // Entries expire with the window, and room comes back.
        #expect((try? v.open(p.wire(p.message(from: p.alice, to: p.bob, time: 45_000, nonce: 99), by: p.alice), nowMs: 45_000).get()) != nil)
        #expect(v.replay.count == 1)
    }

    @Test func malformedInputIsRefusedWithAReason() {
        var v = p.bobVerifier()
        let good = p.wire(p.message(from: p.alice, to: p.bob, time: 5_000), by: p.alice)
        for cut in [0, 1, 2, 3, 100, good.count - 40] {
            guard case .failure(.malformed) = v.open(Array(good.prefix(cut)), nowMs: 5_000) else {
                Issue.record("prefix \(cut) not refused as malformed"); continue
            }
        }
        #expect(v.open([UInt8](repeating: 0, count: SignalMessage.maxSize + 1), nowMs: 0).refusal == (.malformed("\(SignalMessage.maxSize + 1) bytes (at most \(SignalMessage.maxSize))")))
    }

    @Test func repliesCarryStatusAndRef() throws {
        var v = p.bobVerifier()
        var m = p.message(from: p.alice, to: p.bob, time: 5_000)
        m.kind = .reply; m.ref = [UInt8](repeating: 7, count: 16); m.status = 201; m.location = "deadbeef"; m.glare = "ours"
        let got = try v.open(p.wire(m, by: p.alice), nowMs: 5_000).get().message
        #expect(got.status == 201 && got.location == "deadbeef" && got.ref == m.ref && got.glare == "ours")
        m.kind = .offer
        guard case .failure(.malformed) = v.open(p.wire(m, by: p.alice), nowMs: 5_000) else { Issue.record("offer with status accepted"); return }
    }
}

extension Result where Failure == SignalRefusal {
    var refusal: SignalRefusal? { if case .failure(let r) = self { r } else { nil } }
}
