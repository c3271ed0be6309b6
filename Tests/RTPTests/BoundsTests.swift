import NetworkCore
import Testing
@testable import RTP

@Suite struct RetransmissionLimiterTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)

    @Test func theSameSequenceNumberIsNotResentWithinTheInterval() {
        var l = RetransmissionLimiter(minInterval: .milliseconds(100))
        #expect(l.allow(sequence: 7, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0) == nil)
        #expect(l.allow(sequence: 7, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0 + .milliseconds(30)) == .duplicate)
        #expect(l.allow(sequence: 7, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0 + .milliseconds(99)) == .duplicate)
        #expect(l.allow(sequence: 8, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0 + .milliseconds(99)) == nil)
        #expect(l.allow(sequence: 7, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0 + .milliseconds(101)) == nil)
        #expect(l.refusedDuplicates == 2)
    }

    @Test func resendsStayWithinAShareOfTheSendingRate() {
        // 250 kB/s sending, half of it for resends: over 10 s of constant NACKs for fresh
        // packets, at most ~125 kB/s (+ one burst) goes out again.
        var l = RetransmissionLimiter(minInterval: .milliseconds(100), share: 0.5, floorBytesPerSecond: 10_000, burst: .milliseconds(250))
        var sent = 0
        var seq: UInt16 = 0
        var now = t0
        for _ in 0..<10_000 {  // a NACK for 10 packets every millisecond: a flood
            for _ in 0..<10 {
                if l.allow(sequence: seq, bytes: 1000, sendingBytesPerSecond: 250_000, now: now) == nil { sent += 1000 }
                seq &+= 1
            }
            now = now + .milliseconds(1)
        }
        let limit = 125_000.0 * 10 + 125_000 * 0.25 + 1000
        #expect(Double(sent) <= limit)
        #expect(Double(sent) >= 125_000.0 * 10 * 0.9)
        #expect(l.refusedOverBudget > 90_000)
    }

    @Test func theFirstLossOfACallMayUseTheWholeBurst() {
        // 250 kB/s, half for resends, 250 ms of it: 31 kB at once, not just the floor's
        // 10 kB (the first drop of a call lost a queue's worth, and most of its resends
        // were refused and asked for again a repair time later).
        var l = RetransmissionLimiter(share: 0.5, floorBytesPerSecond: 40_000, burst: .milliseconds(250))
        var allowed = 0
        for s in UInt16(0)..<40 where l.allow(sequence: s, bytes: 1200, sendingBytesPerSecond: 250_000, now: t0) == nil { allowed += 1 }
        #expect(allowed == 26)
    }

    @Test func aFloorLetsLossBeRepairedBeforeTheRateIsKnown() {
        var l = RetransmissionLimiter(floorBytesPerSecond: 40_000)
        // Sending rate unknown (0): the floor still allows a few packets at once.
        for s in UInt16(0)..<5 { #expect(l.allow(sequence: s, bytes: 1200, sendingBytesPerSecond: 0, now: t0) == nil) }
    }
}

@Suite struct FrameAssemblerBoundsTests {
    @Test func keyframeStartsThatNeverCompleteAreBounded() {
        var a = H264FrameAssembler(capacity: 4096)
        var now = Instant(nanoseconds: 1_000_000_000)
        // A peer sends only first halves of keyframes (an SPS start, never the marker): each
        // is a keyframe start that never completes.
        for i in 0..<2000 {
            let p = RTPPacket(marker: false, payloadType: 102, sequenceNumber: UInt16(i * 2), timestamp: UInt32(i * 3000), ssrc: 1, payload: [0x67, 0x42, 0, 0x1f][...])
            _ = a.insert(p, now: now)
            now = now + .milliseconds(1)
        }
        #expect(a.keyframeStartCount <= H264FrameAssembler.maxKeyframeStarts)
        #expect(a.keyframeStartsDropped > 0)
    }

    @Test func aKeyframeStillCompletesAfterTheFlood() {
        var a = H264FrameAssembler(capacity: 1024)
        let now = Instant(nanoseconds: 1_000_000_000)
        for i in 0..<500 {
            _ = a.insert(RTPPacket(marker: false, payloadType: 102, sequenceNumber: UInt16(i * 2), timestamp: UInt32(i), ssrc: 1, payload: [0x67, 1][...]), now: now)
        }
        // A whole keyframe: SPS, PPS and IDR as single NAL units, the last with the marker.
        let ts: UInt32 = 999_999
        _ = a.insert(RTPPacket(payloadType: 102, sequenceNumber: 2000, timestamp: ts, ssrc: 1, payload: [0x67, 0x42, 0, 0x1f][...]), now: now)
        _ = a.insert(RTPPacket(payloadType: 102, sequenceNumber: 2001, timestamp: ts, ssrc: 1, payload: [0x68, 0xce][...]), now: now)
        let frames = a.insert(RTPPacket(marker: true, payloadType: 102, sequenceNumber: 2002, timestamp: ts, ssrc: 1, payload: [0x65, 0x88, 0x80][...]), now: now)
        #expect(frames.count == 1)
        #expect(frames.first?.isKeyframe == true)
        #expect(a.keyframeStartCount <= H264FrameAssembler.maxKeyframeStarts)
    }
}
