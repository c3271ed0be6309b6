import NetworkCore
import RTP

/// RTP (RFC 3550, RFC 8285 header extensions): accessors, then the round trip: the
/// serialized packet parses back equal (padding is not kept, by design).
func fuzzRTP(_ data: [UInt8]) {
    guard let p = try? RTPPacket(parsing: data) else { return }
    for e in p.extensions {
        _ = p.extension(e.id)
        _ = AbsCaptureTime.decode(e.data)
    }
    let again = try? RTPPacket(parsing: p.serialized())
    require(again == p, "RTP round trip changed the packet")
    _ = SequenceNumber.isNewer(p.sequenceNumber, than: p.sequenceNumber &+ 1)
}

/// Compound RTCP (RFC 3550, 4585, 5104, REMB): the round trip keeps every packet this
/// stack interprets (`.other` is not re-serialized; NACK lists compare as sets, since
/// serializing packs them into PID/BLP pairs; text longer than the 255-byte field, which
/// invalid UTF-8 can become once decoded, is cut).
func fuzzRTCP(_ data: [UInt8]) {
    guard let packets = try? RTCPPacket.parseCompound(data) else { return }
    let wire = RTCPPacket.compound(packets)
    let again: [RTCPPacket]
    do { again = try RTCPPacket.parseCompound(wire) } catch {
        require(false, "RTCP: our serialization of parsed packets does not parse: \(error)")
        return
    }
    // Transport feedback from a peer drives congestion control: whatever it claims, pairing
    // it with a send history and feeding the estimators must not trap.
    for p in packets {
        guard case .transportFeedback(let fb) = p else { continue }
        var history = SendHistory()
        for k in 0..<64 { history.sent(sequence: fb.baseSequence &+ UInt16(k), size: 1200, at: Instant(nanoseconds: 1_000_000_000 + UInt64(k) * 1_000_000)) }
        var controller = BitrateController(startKbps: 1000, maximumKbps: 2000)
        let (results, unknown) = history.results(for: fb, now: Instant(nanoseconds: 2_000_000_000))
        require(results.count + unknown <= Int(fb.statusCount), "TWCC: more results than packets reported")
        _ = controller.receivedTransportFeedback(results, arrived: history.packetsArrived, lost: history.packetsLost, now: Instant(nanoseconds: 2_000_000_000))
        require((100...2000).contains(controller.targetKbps), "TWCC: target left its bounds")
    }
    let kept = packets.filter { if case .other = $0 { return false }; return true }
    require(again.count == kept.count, "RTCP round trip changed the packet count")
    for (a, b) in zip(kept, again) {
        switch (a, b) {
        case let (.nack(s1, m1, l1), .nack(s2, m2, l2)):
            require(s1 == s2 && m1 == m2 && Set(l1) == Set(l2), "RTCP NACK round trip changed the lost set")
        case let (.sourceDescription(c1), .sourceDescription(c2)) where c1.contains(where: { $0.cname.utf8.count > 255 }):
            require(c1.map(\.ssrc) == c2.map(\.ssrc), "RTCP SDES round trip changed the sources")
        case let (.bye(s1, r1), .bye(s2, _)) where (r1?.utf8.count ?? 0) > 255:
            require(s1 == s2, "RTCP BYE round trip changed the sources")
        default:
            require(a == b, "RTCP round trip changed \(a) into \(b)")
        }
    }
}

/// H.264 over RTP (RFC 6184): the input as one RTP payload is depacketized; then as an
/// Annex B access unit it is packetized (payload size from the first byte) and the
/// payloads depacketized must give back the same NAL units.
func fuzzH264(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let mode = r.u8()
    let input = r.rest()
    _ = H264Payload.startsKeyframe(input[...])
    _ = H264Payload.containsIDR(input[...])
    var scratch: [UInt8] = []
    var open = mode & 1 != 0
    _ = H264Payload.depacketize(input[...], into: &scratch, fuOpen: &open)

    let maxPayload = 16 + Int(mode >> 1) * 9
    let nals = AnnexB.nalUnitRanges(input).map { Array(input[$0]) }.filter { $0[0] & 0x1F != H264NALType.aud }
    // Types 0 and 24-31 are not H.264 NAL units an encoder emits (they mean STAP/FU on the wire).
    guard nals.allSatisfy({ (1...23).contains($0[0] & 0x1F) }) else { return }
    var payloads: [([UInt8], Bool)] = []
    var packetizer = H264Packetizer(maxPayloadSize: maxPayload)
    packetizer.packetize(accessUnit: input) { payloads.append((Array($0), $1)) }
    require(payloads.isEmpty == nals.isEmpty, "H.264 packetizer: \(nals.count) NAL units gave \(payloads.count) payloads")
    var out: [UInt8] = []
    var fuOpen = false
    for (i, (p, last)) in payloads.enumerated() {
        require(p.count <= maxPayload, "H.264 payload of \(p.count) bytes over the limit \(maxPayload)")
        require(last == (i == payloads.count - 1), "H.264 marker not on the last payload only")
        require(H264Payload.depacketize(p[...], into: &out, fuOpen: &fuOpen), "H.264 own payload refused by the depacketizer")
    }
    require(!fuOpen, "H.264 FU-A left open")
    let back = AnnexB.nalUnitRanges(out).map { Array(out[$0]) }
    require(back == nals, "H.264 packetize/depacketize changed the NAL units")
}

/// Frame assembly, NACK generation and receive statistics fed a packet sequence read from
/// the input (sequence steps, timestamps, markers, payloads, time passing), as a hostile
/// or broken peer could send it.
func fuzzH264Assembler(_ data: [UInt8]) {
    var r = FuzzReader(data)
    var chain = VideoReceiveChain(capacity: r.bool() ? 16 : 1024)
    var stats = ReceiveStatistics(ssrc: 1, clockRate: 90_000)
    var seq = r.u16()
    var ts = r.u32()
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var steps = 0
    while !r.isAtEnd && steps < 1024 {
        steps += 1
        let flags = r.u8()
        var frames: [AssembledFrame] = []
        if flags & 0x80 != 0 {
            now = now + .milliseconds(Int64(r.u8()) * 4)
            frames = chain.tick(now: now).frames
            if flags & 0x20 != 0 { chain.setRoundTrip(.milliseconds(Int64(r.u16()))) }
            if flags & 0x40 != 0 { stats.receivedSenderReport(ntp: UInt64(r.u32()) << 16, arrival: now) }
            let report = stats.makeReport(now: now)
            _ = roundTripTime(report: report, nowNTP: UInt64(r.u32()) << 16)
        } else {
            seq &+= UInt16(bitPattern: Int16(Int8(bitPattern: r.u8())))
            if flags & 1 != 0 { ts &+= 3000 }
            if flags & 2 != 0 { ts = r.u32() }
            let payload = r.take(Int(r.u8()))
            let packet = RTPPacket(marker: flags & 4 != 0, payloadType: 102, sequenceNumber: seq, timestamp: ts, ssrc: 1,
                                   payload: payload[...])
            frames = chain.receive(packet, captureNTP: flags & 8 != 0 ? UInt64(ts) : nil, now: now)
            stats.received(sequence: seq, rtpTimestamp: ts, payloadBytes: payload.count, arrival: now)
        }
        for f in frames {
            require(f.packetCount > 0 && f.data.starts(with: AnnexB.startCode), "assembled frame without packets or start code")
        }
        _ = chain.framesDropped
        _ = stats.jitterSeconds; _ = stats.packetsLost
        require(chain.nack.missingCount <= chain.nack.maxMissing, "NACK generator tracks \(chain.nack.missingCount) sequence numbers")
        require(chain.nack.effectiveRetryInterval <= NACKGenerator.maxRetryInterval, "NACK retry interval unbounded")
    }
}

/// The audio jitter buffer fed packets (sequence and timestamp steps or jumps, duplicates,
/// late ones) and playout ticks. Whatever plays must be something that was inserted.
func fuzzJitterBuffer(_ data: [UInt8]) {
    var r = FuzzReader(data)
    var jb = AudioJitterBuffer()
    var seq = r.u16()
    var ts = r.u32()
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var inserted = Set<[UInt8]>()
    var steps = 0
    while !r.isAtEnd && steps < 2048 {
        steps += 1
        let op = r.u8()
        switch op & 3 {
        case 0, 3:
            if op & 3 == 3 { seq = r.u16(); ts = r.u32() } else {
                seq &+= UInt16(bitPattern: Int16(Int8(bitPattern: r.u8())))
                ts &+= 960
            }
            let payload = [UInt8(seq >> 8), UInt8(truncatingIfNeeded: seq)] + r.take(Int(op >> 5))
            inserted.insert(payload)
            jb.insert(sequence: seq, timestamp: ts, payload: payload, arrival: now)
        case 1:
            switch jb.pop() {
            case .packet(let p): require(inserted.contains(p), "jitter buffer played a packet never inserted")
            case .lost(let next?): require(inserted.contains(next), "jitter buffer offered FEC from a packet never inserted")
            case .lost(nil), .silence: break
            }
        default:
            now = now + .milliseconds(Int64(r.u8()))
        }
        require(jb.bufferedFrames >= 0 && jb.bufferedFrames <= 1 << 16, "jitter buffer depth \(jb.bufferedFrames)")
        require((jb.minimumFrames...jb.maximumFrames).contains(jb.targetFrames), "jitter buffer target \(jb.targetFrames)")
        _ = jb.currentDelay
    }
}
