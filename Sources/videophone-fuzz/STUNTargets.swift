import ICE
import NetworkCore
import STUN
import TURN

/// STUN (RFC 8489): every accessor on whatever parses, then the round trip: the message
/// re-serialized (without its FINGERPRINT, which covers the old bytes) parses back equal;
/// with a fresh FINGERPRINT it verifies; signed with a key, its MESSAGE-INTEGRITY verifies.
func fuzzSTUN(_ data: [UInt8]) {
    _ = STUNMessage.isSTUN(data)
    guard let m = try? STUNMessage(parsing: data) else { return }
    _ = m.username; _ = m.priority; _ = m.useCandidate; _ = m.iceControlling; _ = m.iceControlled
    _ = m.xorMappedAddress; _ = m.errorCode
    _ = m.xorAddress(STUNAttributeType.xorPeerAddress); _ = m.xorAddress(STUNAttributeType.xorRelayedAddress)
    _ = m.verifyIntegrity(key: Array("0123456789abcdefghijklmn".utf8))

    var body = m
    body.attributes.removeAll { $0.type == STUNAttributeType.fingerprint || $0.type == STUNAttributeType.messageIntegrity }
    // A message that fills the 16-bit length cannot take MESSAGE-INTEGRITY and FINGERPRINT on top.
    guard data.count <= 65_000 else { return }
    var plain = m
    plain.attributes.removeAll { $0.type == STUNAttributeType.fingerprint }
    let again = try? STUNMessage(parsing: plain.serialize(fingerprint: false))
    require(again == plain, "STUN round trip changed the message")

    let withFingerprint = try? STUNMessage(parsing: body.serialize())
    require(withFingerprint?.attributes.last?.type == STUNAttributeType.fingerprint, "STUN FINGERPRINT not verified on our own message")

    let key = Array("fuzz-key".utf8)
    let signed = try? STUNMessage(parsing: body.serialize(integrityKey: key))
    require(signed?.verifyIntegrity(key: key) == true, "STUN MESSAGE-INTEGRITY of our own message does not verify")
    require(signed?.verifyIntegrity(key: Array("other".utf8)) == false, "STUN MESSAGE-INTEGRITY verifies with the wrong key")
}

/// The TURN client (RFC 8656) fed a sequence of events read from the input:
/// a message "from the server" (optionally answering one of the client's requests, and
/// signed with the long-term key of the realm the server last named, so the fuzzer gets
/// past authentication), ChannelData, time passing, peers added, and data wrapped for a
/// peer (whose ChannelData must unwrap to the same bytes).
func fuzzTURN(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let server = TransportAddress(ip: [192, 0, 2, 10], port: 3478)!
    let username = "videophone", password = "turn-secret"
    var client = TURNClient(server: server, username: username, password: password)
    client.reliableTransport = r.bool()
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var requests = client.start(now: now)
    var key: [UInt8]? = nil
    var peers: [TransportAddress] = []
    var steps = 0
    while !r.isAtEnd && steps < 64 {
        steps += 1
        switch r.u8() % 5 {
        case 0:
            let flags = r.u8()
            guard var m = try? STUNMessage(parsing: r.chunk()) else { continue }
            if flags & 1 != 0, !requests.isEmpty {
                let request = requests[Int(flags >> 4) % requests.count]
                if request.count >= 20 { m.transactionID = Array(request[8..<20]) }
            }
            if let realm = m.attribute(STUNAttributeType.realm) {
                key = longTermKey(username: username, realm: String(decoding: realm, as: UTF8.self), password: password)
            }
            m.attributes.removeAll { $0.type == STUNAttributeType.fingerprint || $0.type == STUNAttributeType.messageIntegrity }
            guard m.attributes.reduce(0, { $0 + 4 + $1.value.count + 3 }) < 60_000 else { continue }
            let wire = m.serialize(integrityKey: flags & 2 != 0 ? key : nil, fingerprint: flags & 4 != 0)
            guard let parsed = try? STUNMessage(parsing: wire) else { require(false, "TURN harness: own message does not parse"); return }
            let (out, event) = client.handle(parsed, now: now)
            requests += out
            if case .allocated(let relayed, _)? = event { require(client.relayedAddress == relayed, "TURN relayed address not kept") }
        case 1:
            let bytes = r.chunk()
            let result = bytes.withUnsafeBytes { client.unwrapChannelData($0) }
            if let (_, range) = result { require(range.lowerBound >= 0 && range.upperBound <= bytes.count, "TURN ChannelData range outside the datagram") }
        case 2:
            now = now + .milliseconds(Int64(r.u16()) * 16)
            requests += client.poll(now: now)
            _ = client.nextDeadline
        case 3:
            let v6 = r.bool()
            guard let peer = TransportAddress(ip: r.take(v6 ? 16 : 4), port: r.u16()) else { continue }
            peers.append(peer)
            requests += client.addPeer(peer, now: now)
        default:
            guard !peers.isEmpty else { continue }
            let peer = peers[Int(r.u8()) % peers.count]
            let payload = r.take(Int(r.u8()))
            var out: [UInt8] = []
            let pad = r.bool()
            payload.withUnsafeBytes { client.wrap($0, to: peer, into: &out, pad: pad) }
            if let first = out.first, TURNClient.isChannelData(first) {
                let back = out.withUnsafeBytes { client.unwrapChannelData($0) }
                require(back?.0 == peer && back.map { Array(out[$0.1]) } == payload, "TURN ChannelData does not unwrap to what was wrapped")
            } else {
                let m = try? STUNMessage(parsing: out)
                require(m?.attribute(STUNAttributeType.data) == payload && m?.xorAddress(STUNAttributeType.xorPeerAddress) == peer,
                        "TURN Send indication does not carry what was wrapped")
            }
        }
        if requests.count > 32 { requests.removeFirst(requests.count - 32) }
    }
    _ = client.release()
}

/// ICE: `a=candidate` values (each must survive `sdpValue` and parse again), then the
/// agent fed binding requests and responses, signed with the right password when the
/// input asks so the checks get past authentication.
func fuzzICE(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let candidateText = String(decoding: r.chunk(), as: UTF8.self)
    if let c = ICECandidate(sdp: candidateText) {
        _ = c.address; _ = c.isMDNS; _ = c.description
        let again = ICECandidate(sdp: c.sdpValue)
        require(again != nil, "ICE candidate's own sdpValue does not parse: \(c.sdpValue)")
        if let again {
            require(again.component == c.component && again.priority == c.priority && again.port == c.port
                    && again.type == c.type && again.transport == c.transport, "ICE candidate round trip changed it")
        }
    }
    let controlling = r.bool()
    let localPwd = "fuzzfuzzfuzzfuzzfuzzfuzz", remotePwd = "remoteremoteremoteremote"
    var agent = ICEAgent(controlling: controlling, localUfrag: "loca", localPwd: localPwd, tieBreaker: 42)
    let base = TransportAddress(ip: [192, 0, 2, 1], port: 5000)!
    agent.addLocalCandidate(ICECandidate(foundation: "1", priority: 2_130_706_431, host: "192.0.2.1", port: 5000, type: .host), base: base)
    var now = Instant(nanoseconds: 1_000_000_000_000)
    agent.setRemoteCredentials(ufrag: "remo", pwd: remotePwd, now: now)
    _ = agent.addRemoteCandidate(ICECandidate(foundation: "2", priority: 2_130_706_431, host: "192.0.2.2", port: 6000, type: .host), now: now)
    var sent: [[UInt8]] = []
    var steps = 0
    while !r.isAtEnd && steps < 64 {
        steps += 1
        let flags = r.u8()
        if flags & 0x80 != 0 {
            now = now + .milliseconds(Int64(r.u16()))
            agent.poll(now: now)
        } else {
            guard var m = try? STUNMessage(parsing: r.chunk()) else { continue }
            if flags & 1 != 0, !sent.isEmpty {
                let request = sent[Int(flags >> 4) % sent.count]
                if request.count >= 20 { m.transactionID = Array(request[8..<20]) }
            }
            m.attributes.removeAll { $0.type == STUNAttributeType.fingerprint || $0.type == STUNAttributeType.messageIntegrity }
            guard m.attributes.reduce(0, { $0 + 4 + $1.value.count + 3 }) < 60_000 else { continue }
            let key: [UInt8]? = flags & 2 != 0 ? Array((m.messageClass == .request ? localPwd : remotePwd).utf8) : nil
            guard let parsed = try? STUNMessage(parsing: m.serialize(integrityKey: key, fingerprint: flags & 4 != 0)) else { continue }
            let from = flags & 8 != 0 ? TransportAddress(ip: [192, 0, 2, 2], port: 6000)! : TransportAddress(ip: [198, 51, 100, 7], port: 7000)!
            agent.handle(parsed, from: from, localIndex: 0, now: now)
        }
        sent += agent.takeTransmits().map(\.bytes)
        if sent.count > 32 { sent.removeFirst(sent.count - 32) }
        _ = agent.takeEvents()
        _ = agent.selectedPair
    }
}
