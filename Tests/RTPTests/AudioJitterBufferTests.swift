import NetworkCore
import Testing
@testable import RTP

/// Drives the jitter buffer with a test clock: packets every 20 ms (or as scripted),
/// one pop per 20 ms playout tick.
@Suite struct AudioJitterBufferTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)

    func packet(_ seq: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: seq), UInt8(truncatingIfNeeded: seq >> 8)] }
    func seq(of p: AudioJitterBuffer.Playout) -> UInt16? {
        if case .packet(let b) = p { return UInt16(b[0]) | UInt16(b[1]) << 8 }
        return nil
    }

    mutating func feed(_ jb: inout AudioJitterBuffer, _ s: UInt16, at ms: Int) {
        // Timestamps advance with the sequence from an arbitrary base (they wrap independently).
        let ts = UInt32(0xFFFF_0000) &+ UInt32(s &- 65000) &* 960
        jb.insert(sequence: s, timestamp: ts, payload: packet(s), arrival: t0 + .milliseconds(ms))
    }

    @Test mutating func buffersToTargetThenPlaysInOrder() {
        var jb = AudioJitterBuffer()
        feed(&jb, 100, at: 0)
        #expect(jb.pop() == .silence)          // one frame: below the 2-frame minimum
        feed(&jb, 101, at: 20)
        #expect(seq(of: jb.pop()) == 100)
        feed(&jb, 102, at: 40)
        #expect(seq(of: jb.pop()) == 101)
        #expect(seq(of: jb.pop()) == 102)
    }

    @Test mutating func reordersAndWrapsAround() {
        var jb = AudioJitterBuffer()
        feed(&jb, 65534, at: 0)
        feed(&jb, 0, at: 40)
        feed(&jb, 65535, at: 41)
        #expect(seq(of: jb.pop()) == 65534)
        #expect(seq(of: jb.pop()) == 65535)
        #expect(seq(of: jb.pop()) == 0)
    }

    @Test mutating func lostPacketIsConcealedWithTheNextForFEC() {
        var jb = AudioJitterBuffer()
        feed(&jb, 10, at: 0)
        feed(&jb, 12, at: 40)   // 11 lost
        feed(&jb, 13, at: 60)
        #expect(seq(of: jb.pop()) == 10)
        #expect(jb.pop() == .lost(next: packet(12)))
        #expect(seq(of: jb.pop()) == 12)
        #expect(jb.counters.concealed == 1)
    }

    @Test mutating func latePacketIsCountedNotPlayed() {
        var jb = AudioJitterBuffer()
        feed(&jb, 10, at: 0)
        feed(&jb, 12, at: 40)
        _ = jb.pop(); _ = jb.pop()              // 10, then 11 concealed
        feed(&jb, 11, at: 70)
        #expect(jb.counters.late == 1)
        #expect(seq(of: jb.pop()) == 12)
    }

    @Test mutating func duplicatesAreIgnored() {
        var jb = AudioJitterBuffer()
        feed(&jb, 1, at: 0); feed(&jb, 2, at: 20); feed(&jb, 2, at: 21)
        #expect(jb.counters.duplicates == 1)
        #expect(seq(of: jb.pop()) == 1)
        #expect(seq(of: jb.pop()) == 2)
    }

    @Test mutating func stallConcealsBrieflyThenRebuffers() {
        var jb = AudioJitterBuffer()
        feed(&jb, 1, at: 0); feed(&jb, 2, at: 20)
        _ = jb.pop(); _ = jb.pop()
        // The sender goes quiet: three ticks concealed, then silence until refilled.
        #expect(jb.pop() == .lost(next: nil))
        #expect(jb.pop() == .lost(next: nil))
        #expect(jb.pop() == .lost(next: nil))
        #expect(jb.pop() == .silence)
        #expect(jb.pop() == .silence)
        feed(&jb, 20, at: 500)
        #expect(jb.pop() == .silence)          // one frame is not enough to restart on
        // The stall raised the jitter estimate, so the restart waits for a deeper buffer;
        // it then resumes at the first packet that came, not at the stalled position.
        var first: AudioJitterBuffer.Playout = .silence
        for s in UInt16(21)...30 where first == .silence {
            feed(&jb, s, at: 500 + Int(s - 20) * 20)
            first = jb.pop()
        }
        #expect(seq(of: first) == 20)
        #expect(jb.counters.rebuffers == 1)
    }

    @Test mutating func burstAfterStallIsTrimmedSoDelayComesBack() {
        var jb = AudioJitterBuffer()
        feed(&jb, 0, at: 0); feed(&jb, 1, at: 20)
        _ = jb.pop()
        // 30 packets held up in the network arrive at once.
        for s in UInt16(2)...31 { feed(&jb, s, at: 600) }
        #expect(jb.bufferedFrames <= jb.targetFrames + 3)
        #expect(jb.counters.discarded > 20)
        // What is played next is recent: at most target + 1 frames behind the newest.
        let target = jb.targetFrames
        #expect(Int(seq(of: jb.pop()) ?? 0) >= 31 - target - 1)
    }

    @Test mutating func jitterRaisesTheTarget() {
        var steady = AudioJitterBuffer()
        for s in UInt16(0)..<100 { feed(&steady, s, at: Int(s) * 20) }
        #expect(steady.targetFrames == 2)

        var jittery = AudioJitterBuffer()
        // Arrivals alternate 0 and 60 ms late.
        for s in UInt16(0)..<100 { feed(&jittery, s, at: Int(s) * 20 + (s % 2 == 0 ? 0 : 60)) }
        #expect(jittery.jitterMs > 40)
        #expect(jittery.targetFrames >= 7)
        #expect(jittery.targetFrames <= jittery.maximumFrames)
    }

    @Test mutating func jumpBeyondTheRingRestartsNearTheNewest() {
        var jb = AudioJitterBuffer()
        feed(&jb, 0, at: 0); feed(&jb, 1, at: 20)
        _ = jb.pop()
        feed(&jb, 5000, at: 40)     // the sender restarted its sequence
        feed(&jb, 5001, at: 60)
        #expect(jb.bufferedFrames <= jb.targetFrames + 1)
        var played: UInt16?
        for _ in 0..<4 where played == nil { played = seq(of: jb.pop()) }
        #expect(played == 5000)
    }

    /// Slots keep their storage; a packet handed out and still held is not overwritten by
    /// the next one into its slot.
    @Test mutating func aPoppedPacketSurvivesItsSlotBeingReused() {
        var jb = AudioJitterBuffer()
        for s in UInt16(0)..<3 { feed(&jb, s, at: Int(s) * 20) }
        let first = jb.pop()
        #expect(seq(of: first) == 0)
        for s in UInt16(3)..<70 {
            feed(&jb, s, at: Int(s) * 20)
            _ = jb.pop()
        }
        #expect(seq(of: first) == 0)
        // A slice of a datagram goes in as its bytes.
        let datagram: [UInt8] = [9, 9, 9, 70, 0]
        jb.insert(sequence: 70, timestamp: 0, payload: datagram[3...], arrival: t0 + .milliseconds(1400))
        var played: [UInt16] = []
        for _ in 0..<5 { if let s = seq(of: jb.pop()) { played.append(s) } }
        #expect(played.contains(70))
    }
}
