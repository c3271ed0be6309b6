import NetworkCore
import Testing
@testable import RTP

@Suite struct RTPPacketTests {
    @Test func roundTripWithOneByteExtensions() throws {
        let p = RTPPacket(marker: true, payloadType: 102, sequenceNumber: 65535, timestamp: 0xDEADBEEF, ssrc: 0x1234_5678,
                          extensions: [RTPHeaderExtension(id: 1, data: Array("1".utf8)), RTPHeaderExtension(id: 2, data: AbsCaptureTime.encode(ntp: 0x0102_0304_0506_0708))],
                          payload: [1, 2, 3, 4, 5][...])
        let parsed = try RTPPacket(parsing: p.serialized())
        #expect(parsed == p)
        #expect(parsed.extension(2).flatMap(AbsCaptureTime.decode) == 0x0102_0304_0506_0708)
    }

    @Test func roundTripWithTwoByteExtensionsAndCSRCs() throws {
        let p = RTPPacket(payloadType: 111, sequenceNumber: 7, timestamp: 960, ssrc: 9, csrcs: [1, 2],
                          extensions: [RTPHeaderExtension(id: 20, data: Array(repeating: 7, count: 20))], payload: [9][...])
        #expect(try RTPPacket(parsing: p.serialized()) == p)
    }

    @Test(arguments: [
        ([UInt8](), "too short"),
        ([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "version"),
        ([0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 9], "overruns"),
        ([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50], "padding"),
    ])
    func malformedPacketsGiveErrorsNamingTheProblem(bytes: [UInt8], expected: String) {
        #expect { try RTPPacket(parsing: bytes) } throws: { error in
            (error as? RTPParseError)?.description.contains(expected) == true
        }
    }

    @Test func sequenceArithmeticWraps() {
        #expect(SequenceNumber.isNewer(0, than: 65535))
        #expect(!SequenceNumber.isNewer(65535, than: 0))
        #expect(SequenceNumber.distance(from: 65530, to: 4) == 10)
    }
}

@Suite struct RTCPTests {
    @Test func compoundRoundTrip() throws {
        let rr = ReceptionReport(ssrc: 5, fractionLost: 12, cumulativeLost: -3, highestSequence: 70000, jitter: 42, lastSR: 0xAABBCCDD, delaySinceLastSR: 655)
        let packets: [RTCPPacket] = [
            .senderReport(ssrc: 1, ntp: 0x1122_3344_5566_7788, rtpTimestamp: 90000, packetCount: 10, octetCount: 1000, reports: [rr]),
            .receiverReport(ssrc: 2, reports: []),
            .sourceDescription([(1, "alice"), (2, "bob-device")]),
            .nack(sender: 1, media: 2, lost: [100, 101, 105, 117, 200]),
            .pli(sender: 1, media: 2),
            .fir(sender: 1, entries: [(2, 7)]),
            .remb(sender: 1, bitrate: 1_500_000, ssrcs: [2]),
            .bye(ssrcs: [1, 2], reason: "hangup"),
        ]
        let parsed = try RTCPPacket.parseCompound(RTCPPacket.compound(packets))
        #expect(parsed.count == packets.count)
        for (a, b) in zip(parsed, packets) where !(a == b) {
            if case .remb(_, let x, _) = a, case .remb(_, let y, _) = b { #expect(abs(Double(x) - Double(y)) / Double(y) < 0.01); continue }
            Issue.record("mismatch: \(a) vs \(b)")
        }
    }

    @Test func nackPacksSixteenFollowersIntoOneBitmask() {
        let pairs = RTCPPacket.nackPairs([10, 11, 26, 27])
        #expect(pairs.count == 2)
        #expect(pairs[0].0 == 10 && pairs[0].1 == 1 | 1 << 15)
        #expect(pairs[1].0 == 27)
    }

    @Test func truncatedCompoundIsAnError() {
        let bytes = RTCPPacket.compound([.pli(sender: 1, media: 2)])
        #expect(throws: RTPParseError.self) { try RTCPPacket.parseCompound(Array(bytes.dropLast(2))) }
    }
}

@Suite struct H264Tests {
    /// An access unit: SPS, PPS, and an IDR slice of `sliceSize` bytes.
    static func accessUnit(sliceSize: Int, idr: Bool = true) -> [UInt8] {
        var au: [UInt8] = []
        if idr {
            au += [0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40]
            au += [0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80]
        }
        // A slice header that starts the picture: first_mb_in_slice = 0 (ue(v) "1").
        au += [0, 0, 1, idr ? 0x65 : 0x41, 0x88]
        au += (1..<sliceSize).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) | 1 }
        return au
    }

    static func packets(_ au: [UInt8], firstSeq: UInt16, ts: UInt32, max: Int = 1200) -> [RTPPacket] {
        var out: [RTPPacket] = []
        var seq = firstSeq
        var packetizer = H264Packetizer(maxPayloadSize: max)
        packetizer.packetize(accessUnit: au) { payload, last in
            out.append(RTPPacket(marker: last, payloadType: 102, sequenceNumber: seq, timestamp: ts, ssrc: 1, payload: payload))
            seq &+= 1
        }
        return out
    }

    @Test(arguments: [10, 1000, 1185, 5000, 60000])
    func packetizeThenAssembleGivesTheSameNALUnits(sliceSize: Int) throws {
        let au = Self.accessUnit(sliceSize: sliceSize)
        let pkts = Self.packets(au, firstSeq: 65530, ts: 3000)
        #expect(pkts.allSatisfy { $0.payload.count <= 1200 })
        #expect(pkts.last?.marker == true)
        #expect(pkts.dropLast().allSatisfy { !$0.marker })
        var asm = H264FrameAssembler()
        var frames: [AssembledFrame] = []
        for p in pkts { frames += asm.insert(p, now: Instant(nanoseconds: 1)) }
        #expect(frames.count == 1)
        let frame = try #require(frames.first)
        #expect(frame.isKeyframe)
        // Same NAL units, normalised to 4-byte start codes.
        let expected = AnnexB.nalUnitRanges(au).flatMap { AnnexB.startCode + au[$0] }
        #expect(frame.data == expected)
    }

    /// Bandwidth probes are padding-only packets between frames: they take sequence
    /// numbers, complete nothing, and a late (retransmitted) one does not stall the stream.
    @Test func paddingBetweenFramesIsSkippedEvenWhenItArrivesLate() {
        let key = Self.packets(Self.accessUnit(sliceSize: 3000), firstSeq: 65534, ts: 9000)
        var seq = key.last!.sequenceNumber &+ 1
        let padding = (0..<3).map { k in RTPPacket(payloadType: 102, sequenceNumber: seq &+ UInt16(k), timestamp: 9000, ssrc: 1, payload: []) }
        seq &+= 3
        let delta = Self.packets(Self.accessUnit(sliceSize: 2000, idr: false), firstSeq: seq, ts: 12000)
        var asm = H264FrameAssembler(gapTimeout: .milliseconds(100))
        let now = Instant(nanoseconds: 1_000_000)
        var frames: [AssembledFrame] = []
        for p in key { frames += asm.insert(p, now: now) }
        // The middle padding packet is late: the next frame waits for it, then completes.
        for p in [padding[0], padding[2]] + delta { frames += asm.insert(p, now: now) }
        #expect(frames.count == 1)
        frames += asm.insert(padding[1], now: now + .milliseconds(20))
        #expect(frames.count == 2)
        #expect(frames.map(\.isKeyframe) == [true, false])
        #expect(asm.framesDropped == 0)
        let asked = asm.takeKeyframeRequest()
        #expect(!asked)
    }

    /// A keyframe that supersedes a gap leaves the packets before it undeliverable: they
    /// are cleared with the jump, so the assembler settles instead of seeing them as a gap
    /// that never closes (which would ask for a keyframe every gap timeout).
    @Test func packetsSkippedByAKeyframeDoNotKeepTheAssemblerWaiting() {
        let key = Self.packets(Self.accessUnit(sliceSize: 3000), firstSeq: 10, ts: 9000)
        let delta = Self.packets(Self.accessUnit(sliceSize: 4000, idr: false), firstSeq: key.last!.sequenceNumber &+ 1, ts: 12000)
        let key2 = Self.packets(Self.accessUnit(sliceSize: 3000), firstSeq: delta.last!.sequenceNumber &+ 1, ts: 15000)
        var asm = H264FrameAssembler(gapTimeout: .milliseconds(100))
        var now = Instant(nanoseconds: 1_000_000)
        var frames: [AssembledFrame] = []
        for p in key { frames += asm.insert(p, now: now) }
        // The delta frame loses its first fragment for good; its other packets arrive.
        for p in delta.dropFirst() { frames += asm.insert(p, now: now) }
        for p in key2 { frames += asm.insert(p, now: now) }
        #expect(frames.map(\.isKeyframe) == [true, true])
        _ = asm.takeKeyframeRequest()
        // Nothing is pending now: time passing asks for nothing.
        for _ in 0..<5 {
            now = now + .milliseconds(150)
            frames += asm.poll(now: now)
        }
        let asked = asm.takeKeyframeRequest()
        #expect(!asked)
        #expect(frames.count == 2)
        // The lost fragment arriving late changes nothing.
        frames += asm.insert(delta[0], now: now)
        #expect(frames.count == 2)
    }

    @Test func spsAndPpsTravelTogetherInOneSTAPA() {
        let pkts = Self.packets(Self.accessUnit(sliceSize: 3000), firstSeq: 1, ts: 1)
        #expect(pkts[0].payload.first! & 0x1F == H264NALType.stapA)
        #expect(pkts[1].payload.first! & 0x1F == H264NALType.fuA)
    }

    @Test func reorderedAndDuplicatedPacketsStillAssemble() {
        let pkts = Self.packets(Self.accessUnit(sliceSize: 6000), firstSeq: 100, ts: 9000)
        var asm = H264FrameAssembler()
        var frames: [AssembledFrame] = []
        for p in pkts.reversed() + pkts { frames += asm.insert(p, now: Instant(nanoseconds: 1)) }
        #expect(frames.count == 1)
    }

    @Test func aLostFUAFragmentDropsTheFrameUntilRetransmittedOrTheNextKeyframe() {
        let key = Self.packets(Self.accessUnit(sliceSize: 6000), firstSeq: 100, ts: 9000)
        let delta = Self.packets(Self.accessUnit(sliceSize: 2000, idr: false), firstSeq: key.last!.sequenceNumber &+ 1, ts: 12000)
        var asm = H264FrameAssembler(gapTimeout: .milliseconds(100))
        var frames: [AssembledFrame] = []
        let lost = key[2]
        var now = Instant(nanoseconds: 1_000_000)
        for p in key + delta where p.sequenceNumber != lost.sequenceNumber { frames += asm.insert(p, now: now) }
        #expect(frames.isEmpty)  // neither the keyframe nor the frame that depends on it
        // The retransmission arrives: both frames complete, in order.
        frames += asm.insert(lost, now: now)
        #expect(frames.count == 2)
        #expect(frames.first?.isKeyframe == true)

        // Lose a fragment for good: after the gap timeout the assembler asks for a keyframe.
        let delta2 = Self.packets(Self.accessUnit(sliceSize: 4000, idr: false), firstSeq: delta.last!.sequenceNumber &+ 1, ts: 15000)
        for p in delta2 where p.sequenceNumber != delta2[1].sequenceNumber { frames += asm.insert(p, now: now) }
        now = now + .milliseconds(150)
        frames += asm.poll(now: now)
        now = now + .milliseconds(150)
        frames += asm.poll(now: now)
        let asked = asm.takeKeyframeRequest()
        #expect(asked)
        #expect(frames.count == 2)
        // The next keyframe restores the stream.
        let key2 = Self.packets(Self.accessUnit(sliceSize: 3000), firstSeq: delta2.last!.sequenceNumber &+ 5, ts: 18000)
        for p in key2 { frames += asm.insert(p, now: now) }
        #expect(frames.count == 3)
        #expect(frames.last?.isKeyframe == true)
    }

    @Test func malformedPayloadsAreRejectedWithoutCrashing() {
        var out: [UInt8] = []
        var open = false
        #expect(!H264Payload.depacketize([][...], into: &out, fuOpen: &open))
        #expect(!H264Payload.depacketize([24, 0, 9, 1][...], into: &out, fuOpen: &open))  // STAP-A length overrun
        #expect(!H264Payload.depacketize([28, 0x05, 1][...], into: &out, fuOpen: &open))  // FU-A middle without start
        #expect(!H264Payload.depacketize([30][...], into: &out, fuOpen: &open))
    }

    @Test func nackGeneratorListsGapsAndForgetsFilledOnes() {
        var n = NACKGenerator()
        let t = Instant(nanoseconds: 1_000_000)
        n.received(10, now: t)
        n.received(14, now: t)
        let first = n.due(now: t)
        #expect(first == [11, 12, 13])
        let filled = n.received(12, now: t)
        #expect(filled)
        let second = n.due(now: t + .milliseconds(60))
        #expect(second == [11, 13])
        let third = n.due(now: t + .milliseconds(61))
        #expect(third.isEmpty)  // not again before the retry interval
    }

    @Test func nackGeneratorWaitsAsLongAsReorderingHasTakenBeforeAsking() {
        var n = NACKGenerator()
        var t = Instant(nanoseconds: 1_000_000)
        // A path that keeps order: a gap is asked for at once.
        n.received(1, now: t)
        n.received(3, now: t)
        #expect(n.due(now: t) == [2])
        _ = n.received(2, now: t + .milliseconds(40))   // the retransmission
        #expect(n.reorderWait == .zero)
        // A packet overtaken by its successor arrives 30 ms late without being asked for.
        t = t + .seconds(1)
        n.received(5, now: t)
        n.received(4, now: t + .milliseconds(30))
        #expect(n.reorderedFills == 1)
        #expect(n.reorderWait >= .milliseconds(30))
        // From now on a gap waits that long before its NACK, and needs none if it fills.
        n.received(7, now: t + .milliseconds(100))
        #expect(n.due(now: t + .milliseconds(110)).isEmpty)
        _ = n.received(6, now: t + .milliseconds(120))
        #expect(n.due(now: t + .milliseconds(200)).isEmpty)
        // A real loss is still asked for, once the wait is over.
        n.received(9, now: t + .milliseconds(300))
        #expect(n.due(now: t + .milliseconds(310)).isEmpty)
        #expect(n.due(now: t + .milliseconds(300) + NACKGenerator.maxReorderWait) == [8])
    }

    @Test func receiveStatisticsCountLossAcrossWrap() {
        var s = ReceiveStatistics(ssrc: 1, clockRate: 90000)
        for seq: UInt16 in [65534, 65535, 1, 2] {
            s.received(sequence: seq, rtpTimestamp: 0, payloadBytes: 100, arrival: Instant(nanoseconds: 1))
        }
        #expect(s.packetsLost == 1)
        #expect(s.extendedHighestSequence == 65536 + 2)
        let r = s.makeReport(now: Instant(nanoseconds: 2))
        #expect(r.cumulativeLost == 1)
        #expect(r.fractionLost == 51)  // 1 of 5 → 256/5
    }
}

@Suite struct SSRCFilterTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)

    @Test func signalledSSRCsOnly() {
        var f = SSRCFilter(signalled: [10, 11])
        do { let ok = f.accept(10, now: t0); #expect(ok) }
        do { let ok = f.accept(11, now: t0); #expect(ok) }
        do { let ok = f.accept(12, now: t0); #expect(!ok) }
        #expect(f.refused == 1)
    }

    @Test func withoutSignallingTheFirstIsKeptUntilItFallsSilent() {
        var f = SSRCFilter()
        do { let ok = f.accept(1, now: t0); #expect(ok) }
        do { let ok = f.accept(2, now: t0 + .milliseconds(500)); #expect(!ok) }
        do { let ok = f.accept(1, now: t0 + .seconds(1)); #expect(ok) }
        do { let ok = f.accept(2, now: t0 + .milliseconds(2900)); #expect(!ok) }
        do { let ok = f.accept(2, now: t0 + .seconds(3) + .milliseconds(1)); #expect(ok) }
        #expect(f.current == 2)
        #expect(f.refused == 2)
    }
}

@Suite struct KeyframeStartTests {
    /// Only the first slice of an IDR picture starts a keyframe: with multi-slice IDRs, a
    /// frame assembled from a later slice would lack the slices before it.
    @Test func onlyTheFirstSliceOfAnIDRStartsAKeyframe() {
        #expect(H264Payload.startsKeyframe([0x67, 0x42][...]))                  // SPS
        #expect(H264Payload.startsKeyframe([0x65, 0x88, 0x84][...]))            // IDR, first_mb 0
        #expect(!H264Payload.startsKeyframe([0x65, 0x40, 0x84][...]))           // IDR, a later slice
        #expect(!H264Payload.startsKeyframe([0x65][...]))                       // no slice header
        #expect(H264Payload.startsKeyframe([0x7C, 0x85, 0x88][...]))            // FU-A start of IDR, first_mb 0
        #expect(!H264Payload.startsKeyframe([0x7C, 0x85, 0x21][...]))           // FU-A start of a later slice
        #expect(H264Payload.startsKeyframe([0x78, 0, 2, 0x65, 0x88][...]))      // STAP-A, IDR first
        #expect(!H264Payload.startsKeyframe([0x78, 0, 2, 0x65, 0x10][...]))     // STAP-A, later IDR slice
        #expect(H264Payload.startsKeyframe([0x78, 0, 2, 0x67, 0x42][...]))      // STAP-A, SPS first
    }
}
