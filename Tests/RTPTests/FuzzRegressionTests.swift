import NetworkCore
import Testing
@testable import RTP

/// Inputs found by fuzzing (Sources/videophone-fuzz, targets rtcp and h264-assembler) or by
/// the review of input-derived conversions that came with it; each once hung, trapped or
/// broke a bound. The raw inputs are also seeds in Tests/Fuzz/corpus.
@Suite struct RTPFuzzRegressionTests {
    /// SDES with the padding bit: its padding count may end the packet inside a chunk; the
    /// loop skipping to the chunk's 32-bit boundary read past the end forever (`u8()`
    /// returns nil without moving), hanging the transport thread on a 12-byte packet.
    @Test func sdesCutShortByItsPaddingDoesNotHang() throws {
        let packet: [UInt8] = [0xA1, 202, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3]
        let parsed = try RTCPPacket.parseCompound(packet)
        #expect(parsed.count == 1)
        guard case .sourceDescription(let chunks) = parsed[0] else { Issue.record("not SDES: \(parsed)"); return }
        #expect(chunks.count == 1 && chunks[0].ssrc == 1 && chunks[0].cname == "")
    }

    /// Timestamps swinging between 0 and 2^32−1 (a broken or hostile sender) drive the
    /// interarrival jitter past 2^32 RTP units; `UInt32(jitterQ4)` in the report trapped.
    @Test func jitterBeyond32BitsSaturatesInTheReport() {
        var stats = ReceiveStatistics(ssrc: 1, clockRate: 90_000)
        var now = Instant(nanoseconds: 1_000_000_000)
        var saturated = false
        for i in 0..<600 {
            stats.received(sequence: UInt16(i), rtpTimestamp: i % 2 == 0 ? 0 : UInt32.max, payloadBytes: 100, arrival: now)
            now = now + .seconds(1)
            if stats.makeReport(now: now).jitter == UInt32.max { saturated = true }
        }
        #expect(saturated)
    }

    /// fuzz target h264-assembler: sequence numbers skipping ahead by 999 again and again
    /// grew the NACK generator's table (and each NACK sent) toward all 65 536 numbers.
    @Test func nackTableStaysBoundedWhenThePeerKeepsSkipping() {
        var nack = NACKGenerator()
        let now = Instant(nanoseconds: 1_000_000_000)
        var seq: UInt16 = 0
        nack.received(seq, now: now)
        for _ in 0..<200 {
            seq &+= 999
            nack.received(seq, now: now)
            #expect(nack.missingCount <= nack.maxMissing)
        }
        #expect(nack.due(now: now).count <= nack.maxMissing)
        // An ordinary gap is still tracked after a reset.
        nack.received(seq &+ 3, now: now)
        #expect(nack.due(now: now + .milliseconds(100)).contains(seq &+ 1))
    }

    /// fuzz target h264-assembler: a frame whose only packet was a STAP-A holding no
    /// aggregation unit (just the 0x78 header byte) was delivered as an empty access unit.
    @Test func emptySTAPAIsMalformedAndCompletesNoFrame() {
        var out: [UInt8] = []
        var open = false
        #expect(!H264Payload.depacketize([0x78][...], into: &out, fuOpen: &open))
        #expect(out.isEmpty)
        var assembler = H264FrameAssembler()
        let now = Instant(nanoseconds: 1_000_000_000)
        let idr = RTPPacket(marker: true, payloadType: 102, sequenceNumber: 1, timestamp: 3000, ssrc: 1, payload: [0x65, 0x88, 2][...])
        #expect(assembler.insert(idr, now: now).count == 1)
        let empty = RTPPacket(marker: true, payloadType: 102, sequenceNumber: 2, timestamp: 6000, ssrc: 1, payload: [0x78][...])
        #expect(assembler.insert(empty, now: now).isEmpty)
        #expect(assembler.framesDropped == 1)
    }
}
