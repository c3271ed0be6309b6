#if canImport(Glibc)
import Glibc
#endif
import ICE
import MDNS
import NetworkCore
import RTP
import SDP
import STUN

/// Writes the seed corpus: real message shapes built with the stack's own serializers,
/// foreign ones written out by hand (RFC 5769 vectors, browser SDP fixtures), the shipped
/// TOML files. Run from the repository root:
/// `videophone-fuzz --write-seeds Tests/Fuzz/corpus`. Seeds for a new target go here
/// or in as files.
func writeSeeds(into root: String) -> Bool {
    var ok = true
    var prefix = root.hasPrefix("/") ? "" : "."
    for part in root.split(separator: "/") { prefix += "/\(part)"; mkdir(prefix, 0o755) }
    func put(_ target: String, _ name: String, _ bytes: [UInt8]) {
        mkdir("\(root)/\(target)", 0o755)
        if !writeFile("\(root)/\(target)/\(name)", bytes) { complain("cannot write \(root)/\(target)/\(name)\n"); ok = false }
    }
    func copy(_ target: String, _ name: String, from path: String) {
        guard let bytes = readFile(path) else { complain("cannot read \(path)\n"); ok = false; return }
        put(target, name, bytes)
    }
    let tid: [UInt8] = Array(0..<12)
    let key = Array("0123456789abcdefghijklmn".utf8)
    let mapped = TransportAddress(host: "203.0.113.5", port: 40_000)!
    let mapped6 = TransportAddress(host: "2001:db8::5", port: 40_000)!
    let relayed = TransportAddress(host: "192.0.2.10", port: 50_000)!
    let peer = TransportAddress(host: "198.51.100.7", port: 7000)!

    // STUN
    let rfc5769Request = Hex.decode("""
        000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573742063
        6c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68
        36765920202000080014 9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf
        """)!
    put("stun", "rfc5769-request", rfc5769Request)
    var binding = STUNMessage(method: .binding, class: .request, transactionID: tid)
    binding.add(STUNAttributeType.username, Array("remo:loca".utf8))
    binding.add(STUNAttributeType.priority, [0x6E, 0, 0x1F, 0xFF])
    binding.add(STUNAttributeType.iceControlling, [1, 2, 3, 4, 5, 6, 7, 8])
    binding.add(STUNAttributeType.useCandidate, [])
    put("stun", "binding-request-signed", binding.serialize(integrityKey: key))
    var success = STUNMessage(method: .binding, class: .successResponse, transactionID: tid)
    success.addXORAddress(STUNAttributeType.xorMappedAddress, mapped)
    put("stun", "binding-success-ipv4", success.serialize(integrityKey: key))
    var success6 = STUNMessage(method: .binding, class: .successResponse, transactionID: tid)
    success6.addXORAddress(STUNAttributeType.xorMappedAddress, mapped6)
    put("stun", "binding-success-ipv6", success6.serialize(fingerprint: false))
    var unauthorized = STUNMessage(method: .allocate, class: .errorResponse, transactionID: tid)
    unauthorized.addErrorCode(401, "Unauthorized")
    unauthorized.add(STUNAttributeType.realm, Array("example.org".utf8))
    unauthorized.add(STUNAttributeType.nonce, Array("f00dcafe".utf8))
    put("stun", "allocate-401", unauthorized.serialize())
    var allocated = STUNMessage(method: .allocate, class: .successResponse, transactionID: tid)
    allocated.addXORAddress(STUNAttributeType.xorRelayedAddress, relayed)
    allocated.addXORAddress(STUNAttributeType.xorMappedAddress, mapped)
    allocated.add(STUNAttributeType.lifetime, [0, 0, 2, 0x58])
    put("stun", "allocate-success", allocated.serialize(integrityKey: key))
    var dataIndication = STUNMessage(method: .data, class: .indication, transactionID: tid)
    dataIndication.addXORAddress(STUNAttributeType.xorPeerAddress, peer)
    dataIndication.add(STUNAttributeType.data, [0x80, 0x6F, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    put("stun", "data-indication", dataIndication.serialize())

    // TURN: event records (see fuzzTURN): op, then for op 0 flags and a 16-bit length.
    func record(_ op: UInt8, _ flags: UInt8, _ m: STUNMessage) -> [UInt8] {
        let wire = m.serialize(fingerprint: false)
        var out: [UInt8] = [op, flags]
        out.appendU16(UInt16(wire.count))
        return out + wire
    }
    var bind = STUNMessage(method: .channelBind, class: .successResponse, transactionID: tid)
    bind.add(STUNAttributeType.software, Array("seed".utf8))
    var turnFlow: [UInt8] = [0]
    turnFlow += record(0, 0x01, unauthorized)                     // answers the first Allocate: 401
    turnFlow += record(0, 0x13 | 0x04, allocated)                 // answers the signed retry, signed
    turnFlow += [3, 0] + peer.ip + [0x1B, 0x58]                   // add a peer: permission + channel
    turnFlow += record(0, 0x23 | 0x04, bind)                      // answers the ChannelBind, signed
    turnFlow += record(0, 0x33, bind)
    turnFlow += [4, 0, 4, 0xDE, 0xAD, 0xBE, 0xEF, 1]              // wrap 4 bytes for it
    turnFlow += [1, 0, 8, 0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]     // ChannelData 0x4000
    turnFlow += [2, 0x10, 0x00]                                   // time passes: refreshes
    turnFlow += record(0, 0x00, dataIndication)
    put("turn", "allocate-bind-relay", turnFlow)
    put("turn", "tcp-401-only", [1] + record(0, 0x01, unauthorized))

    // ICE: a candidate line, then agent records.
    func iceSeed(_ candidate: String, _ records: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.appendU16(UInt16(candidate.utf8.count))
        return out + Array(candidate.utf8) + [0] + records
    }
    var check = STUNMessage(method: .binding, class: .request, transactionID: tid)
    check.add(STUNAttributeType.username, Array("loca:remo".utf8))
    check.add(STUNAttributeType.priority, [0x6E, 0, 0x1F, 0xFF])
    check.add(STUNAttributeType.iceControlling, [1, 2, 3, 4, 5, 6, 7, 8])
    check.add(STUNAttributeType.useCandidate, [])
    let checkWire = check.serialize(fingerprint: false)
    var checkRecord: [UInt8] = [0x0A | 0x04]
    checkRecord.appendU16(UInt16(checkWire.count))
    checkRecord += checkWire
    let successWire = success.serialize(fingerprint: false)
    var successRecord: [UInt8] = [0x0B]
    successRecord.appendU16(UInt16(successWire.count))
    successRecord += successWire
    put("ice", "host-check", iceSeed("candidate:1 1 udp 2130706431 192.0.2.2 6000 typ host generation 0",
                                     [0x80, 0, 20] + checkRecord + successRecord + [0x80, 0, 200]))
    put("ice", "srflx", iceSeed("842163049 1 udp 1677729535 203.0.113.5 40000 typ srflx raddr 10.0.0.2 rport 5000 generation 0 network-cost 999", []))
    put("ice", "mdns", iceSeed("a=candidate:2 1 UDP 2122252543 3f1a-77.local 55000 typ host", successRecord))
    put("ice", "relay-tcp", iceSeed("3 1 tcp 16777215 192.0.2.10 50000 typ relay raddr 0.0.0.0 rport 0 tcptype passive", []))

    // SDP and JSEP: browser offers, our own offer and answer.
    for (target, _) in [("sdp", 0), ("jsep", 1)] {
        copy(target, "chrome-offer.sdp", from: "Tests/SDPTests/Fixtures/chrome-offer.sdp")
        copy(target, "firefox-offer.sdp", from: "Tests/SDPTests/Fixtures/firefox-offer.sdp")
        let offer = JSEP.makeOffer(fuzzLocal, sessionID: 1)
        put(target, "own-offer.sdp", Array(offer.text.utf8))
        if let (answer, _) = try? JSEP.answer(offer: offer, local: fuzzLocal, sessionID: 2) {
            put(target, "own-answer.sdp", Array(answer.text.utf8))
        }
    }

    // RTP
    let ext = [RTPHeaderExtension(id: 1, data: Array("1".utf8)), RTPHeaderExtension(id: 2, data: AbsCaptureTime.encode(ntp: 0x0123_4567_89AB_CDEF))]
    put("rtp", "video-one-byte-ext", RTPPacket(marker: true, payloadType: 102, sequenceNumber: 4660, timestamp: 90_000, ssrc: 22,
                                               extensions: ext, payload: [0x65, 0x88, 0x84, 0x00][...]).serialized())
    put("rtp", "audio-csrc", RTPPacket(payloadType: 111, sequenceNumber: 65_535, timestamp: 960, ssrc: 11, csrcs: [1, 2],
                                       payload: [0xFC, 0xFF, 0xFE][...]).serialized())
    put("rtp", "two-byte-ext", RTPPacket(payloadType: 102, sequenceNumber: 1, timestamp: 1, ssrc: 22,
                                         extensions: [RTPHeaderExtension(id: 20, data: []), RTPHeaderExtension(id: 3, data: Array(repeating: 7, count: 20))],
                                         payload: [1][...]).serialized())
    var padded = RTPPacket(payloadType: 111, sequenceNumber: 9, timestamp: 9, ssrc: 11, payload: [1, 2, 3][...]).serialized()
    padded[0] |= 0x20
    padded += [0, 0, 0, 4]
    put("rtp", "padding", padded)

    // RTCP
    let report = ReceptionReport(ssrc: 22, fractionLost: 12, cumulativeLost: -3, highestSequence: 70_000, jitter: 30, lastSR: 0x1234_5678, delaySinceLastSR: 6553)
    put("rtcp", "sr-sdes", RTCPPacket.compound([
        .senderReport(ssrc: 11, ntp: 0xE000_0000_8000_0000, rtpTimestamp: 960, packetCount: 10, octetCount: 1000, reports: [report]),
        .sourceDescription([(ssrc: 11, cname: "fuzz")])]))
    put("rtcp", "rr-remb", RTCPPacket.compound([.receiverReport(ssrc: 1, reports: [report]), .remb(sender: 1, bitrate: 1_500_000, ssrcs: [22])]))
    put("rtcp", "nack-pli-fir", RTCPPacket.compound([.nack(sender: 1, media: 22, lost: [10, 11, 13, 40]), .pli(sender: 1, media: 22),
                                                     .fir(sender: 1, entries: [(ssrc: 22, sequence: 3)])]))
    put("rtcp", "bye", RTCPPacket.compound([.bye(ssrcs: [11, 22], reason: "hung up")]))
    var twcc = TransportFeedbackGenerator()
    for k in 0..<40 where k % 7 != 3 { twcc.received(sequence: UInt16(65520 + k % 16) &+ UInt16(k / 16 * 16), now: Instant(nanoseconds: 1_000_000_000 + UInt64(k) * 700_000)) }
    put("rtcp", "transport-feedback", RTCPPacket.compound(twcc.poll(now: Instant(nanoseconds: 2_000_000_000), senderSSRC: 1, mediaSSRC: 22).map { .transportFeedback($0) }))
    put("rtcp", "xr-unknown", [0x80, 207, 0, 2, 0, 0, 0, 1, 4, 0, 0, 0])

    // H.264: a mode byte (bit 0: FU-A open; the rest: payload size), then the bytes.
    let sps: [UInt8] = [0x67, 0x42, 0xE0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xE8]
    let pps: [UInt8] = [0x68, 0xCE, 0x3C, 0x80]
    let idr: [UInt8] = [0x65, 0x88] + (0..<299).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) | 1 }
    let slice: [UInt8] = [0x41, 0x9A, 0x02, 0x04]
    // Built in steps: Swift 6.2 cannot type-check the one-expression sum in reasonable time.
    var au: [UInt8] = AnnexB.startCode + sps
    au += AnnexB.startCode + pps
    au += [0, 0, 1] + idr
    put("h264", "annexb-keyframe", [20] + au)
    put("h264", "annexb-slice", [0xFE] + AnnexB.startCode + [0x09, 0xF0] + AnnexB.startCode + slice)
    var stap: [UInt8] = [0x78]
    for n in [sps, pps] { stap.appendU16(UInt16(n.count)); stap += n }
    put("h264", "stap-a", [0] + stap)
    put("h264", "fu-a-start", [0, 0x7C, 0x85] + idr.dropFirst().prefix(40))
    put("h264", "fu-a-end", [1, 0x7C, 0x45, 1, 2, 3])

    // Frame assembly: capacity flag, start seq, start timestamp, then packet records
    // (flags: 1 new timestamp, 2 explicit timestamp, 4 marker; seq step; length; payload)
    // and time records (flags & 0x80).
    var frames: [UInt8] = [0, 0xFF, 0xF0, 0, 0, 0, 0]
    var payloads: [([UInt8], Bool)] = []
    var packetizer = H264Packetizer(maxPayloadSize: 100)
    packetizer.packetize(accessUnit: au) { payloads.append((Array($0), $1)) }
    for (i, (p, last)) in payloads.enumerated() {
        let flags: UInt8 = (i == 0 ? 1 : 0) | (last ? 4 : 0)
        frames += [flags, 1, UInt8(p.count)] + p
    }
    let secondHeader: [UInt8] = [0x01 | 0x04, 2, UInt8(slice.count)]
    let second = secondHeader + slice   // one lost before it
    put("h264-assembler", "keyframe-then-gap", frames + second + [0x80, 100] + [0xC0, 50, 1, 2, 3, 4, 5, 6, 7, 8])
    put("h264-assembler", "reordered", [1, 0, 10, 0, 0, 0, 0] + [0x05, 2, UInt8(slice.count)] + slice + [0x01, 0xFF, 4, 0x7C, 0x85, 1, 2]
        + [0x00, 0xFF, 1, 0x68])

    // Jitter buffer: start seq and timestamp, then ops (0 next packet with a seq step,
    // 1 playout tick, 2 time, 3 packet with explicit seq and timestamp).
    var jitter: [UInt8] = [0x12, 0x34, 0, 0, 0, 0]
    for i in 0..<12 { jitter += [0x20, i == 5 ? 2 : 1, 0xAA, 2, 20, 1] }
    jitter += [0, 0xFE, 3, 0x99, 0x99, 0, 1, 0, 0, 1, 1, 1, 1]
    put("jitterbuffer", "steady-loss-late-restart", jitter)

    // mDNS
    put("mdns", "query-a", MDNSMessage.query("1f0e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.local").serialize())
    put("mdns", "answer-a", MDNSMessage.answer("1f0e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.local", address: [192, 168, 1, 20]).serialize())
    put("mdns", "answer-aaaa", MDNSMessage.answer("abc.local", address: Array(repeating: 0xFE, count: 16)).serialize())
    // A response whose answer name is a compression pointer to the question's name.
    var compressed = MDNSMessage.query("host.local").serialize()
    compressed[compressed.count - 2] |= 0x80   // QU
    compressed.writeU16(0x8400, at: 2)
    compressed.writeU16(1, at: 6)
    compressed += [0xC0, 12, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 1]
    put("mdns", "compressed-answer", compressed)

    // TOML: the files the firmware ships.
    copy("toml", "alice.toml", from: "board/sim/alice.toml")
    copy("toml", "bob.toml", from: "board/sim/bob.toml")
    copy("toml", "videophone.toml", from: "board/sim/videophone.toml")
    copy("toml", "raspberry-pi-4.toml", from: "board/profiles/raspberry-pi-4.toml")
    copy("toml", "emulated.toml", from: "board/profiles/emulated.toml")

    // Received video: the project's own x264 output, framed as access units.
    for (name, bytes) in decoderSeeds() { put("h264-decoder", name, bytes) }
    return ok
}
