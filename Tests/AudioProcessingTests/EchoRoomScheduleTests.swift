import MediaDevices
import Testing

/// The emulated board's echo scenario follows the far end: the near end keeps quiet in the
/// first burst, talks through the second and 4 s past it, and the room changes once,
/// 2.5 s into the third.
@Suite struct EchoRoomScheduleTests {
    /// `seconds` of far-end speech (with 0.3 s pauses between 1 s words) or silence.
    static func feed(_ s: inout EchoRoomSchedule, seconds: Double, talking: Bool,
                     changes: inout Int, nearChunks: inout Int) {
        for i in 0..<Int(seconds * 50) {
            let inWord = i % 65 < 50
            if s.step(farLevel: talking && inWord ? 1e-2 : 0) { changes += 1 }
            if s.nearOn { nearChunks += 1 }
        }
    }

    @Test func theNearEndTalksOnlyInTheSecondBurstAndTheRoomChangesOnceInTheThird() {
        var s = EchoRoomSchedule()
        var changes = 0, near = 0
        Self.feed(&s, seconds: 1, talking: false, changes: &changes, nearChunks: &near)
        #expect(s.burst == 0 && !s.farActive)
        Self.feed(&s, seconds: 6, talking: true, changes: &changes, nearChunks: &near)
        #expect(s.burst == 1 && s.farActive, "pauses between words do not end a burst")
        Self.feed(&s, seconds: 5, talking: false, changes: &changes, nearChunks: &near)
        #expect(s.burst == 1 && !s.farActive && near == 0 && changes == 0)
        Self.feed(&s, seconds: 6, talking: true, changes: &changes, nearChunks: &near)
        #expect(s.burst == 2 && s.nearOn)
        let duringBurst = near
        #expect(duringBurst == 300, "the near end talks through the whole burst")
        Self.feed(&s, seconds: 5, talking: false, changes: &changes, nearChunks: &near)
        #expect(!s.nearOn)
        // The burst ends where its last word ends (the pause after it counts as quiet).
        #expect((near - duringBurst) > 180 && (near - duringBurst) < 220, "4 s past the burst: \(near - duringBurst) chunks")
        let nearSoFar = near
        Self.feed(&s, seconds: 2.4, talking: true, changes: &changes, nearChunks: &near)
        #expect(s.burst == 3 && changes == 0)
        Self.feed(&s, seconds: 4, talking: true, changes: &changes, nearChunks: &near)
        #expect(changes == 1 && near == nearSoFar && !s.done)
        Self.feed(&s, seconds: 5, talking: false, changes: &changes, nearChunks: &near)
        Self.feed(&s, seconds: 1, talking: true, changes: &changes, nearChunks: &near)
        #expect(s.done && changes == 1 && near == nearSoFar)
    }
}
