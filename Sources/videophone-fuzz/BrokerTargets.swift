import DTLS
import SignedSignalling

/// Two identities made once per run: `alice` signs, `bob` verifies.
private let alice = try! DTLSCertificate.generate(commonName: "alice")
private let bob = try! DTLSCertificate.generate(commonName: "bob")
private let aliceDER = alice.der

/// Signed broker signalling messages (Sources/SignedSignalling). The first byte picks:
/// even, the rest is a wire message for bob's verifier (it must never be accepted, as no
/// input can carry alice's signature, and a refusal names a reason); odd, the rest makes a
/// message's fields, alice signs it, and bob's verifier must accept it once, with every
/// field intact, and refuse the same bytes as a replay (or, outside the clock window,
/// refuse it as stale).
func fuzzSignalMessage(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let mode = r.u8()
    var verifier = SignalVerifier(me: bob.sha256, pinned: [alice.sha256: "alice"], windowMs: 30_000, replayCapacity: 64)
    let now: Int64 = 1_800_000_000_000
    if mode & 1 == 0 {
        let bytes = r.rest()
        if case .success(let u) = SignalMessage.parse(bytes) {
            require(u.message.body.utf8.count <= SignalMessage.maxBody, "signal: body over the limit")
            require(u.message.call.utf8.count <= 64, "signal: call id over the limit")
        }
        switch verifier.open(bytes, nowMs: now) {
        case .success: require(false, "signal: an input nobody signed was accepted")
        case .failure(let why): require(SignalRefusal.labels.contains(why.label) && !why.description.isEmpty, "signal: refusal without a reason")
        }
        return
    }
    let kinds = SignalMessage.Kind.allCases
    let kind = kinds[Int(r.u8()) % kinds.count]
    let skew = Int64(Int16(bitPattern: r.u16())) * 10
    let callChars = Array("abcdef0123456789-XYZ".utf8)
    // 1 to 64 characters (an input that ends early still gives one).
    let call = String(decoding: r.take(Int(r.u8() % 64) + 1).map { callChars[Int($0) % callChars.count] }, as: UTF8.self).ifEmpty("c")
    // A third of the limit: bytes that are not UTF-8 come back as 3-byte replacements.
    let body = String(decoding: r.rest().prefix(SignalMessage.maxBody / 3), as: UTF8.self)
    var m = SignalMessage(kind: kind, from: alice.sha256, to: bob.sha256, nonce: Array(data.prefix(16)) + [UInt8](repeating: 0, count: max(0, 16 - data.count)),
                          time: now + skew, call: call, body: body)
    if kind == .reply { m.ref = [UInt8](repeating: 1, count: 16); m.status = 200 + Int(mode % 100) }
    let wire = try! m.encode(certificate: aliceDER) { try alice.sign($0) }
    if abs(skew) > verifier.windowMs {
        // Outside the clock window: refused on the timestamp, whatever else it carries.
        if case .failure(.stale(let p, let k)) = verifier.open(wire, nowMs: now), p == "alice", k == skew { return }
        require(false, "signal: a message \(skew) ms off was not refused as stale")
        return
    }
    switch verifier.open(wire, nowMs: now) {
    case .success(let got):
        require(got.peer == "alice" && got.message == m, "signal: fields changed on the way")
        if case .failure(.replayed) = verifier.open(wire, nowMs: now) {} else { require(false, "signal: a replay was not refused") }
    case .failure(let why):
        // Every field the fuzzer chose is within the limits: nothing may be refused.
        require(false, "signal: alice's own message refused: \(why)")
    }
}

private extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}
