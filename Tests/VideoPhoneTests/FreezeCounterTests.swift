import Testing
import NetworkCore
import PeerConnection

@Suite struct FreezeCounterTests {
    private func run(_ gapsMs: [UInt64]) -> InboundRTPStats {
        var stats = InboundRTPStats(kind: "video", ssrc: 1)
        var counter = FreezeCounter()
        var t = Instant(nanoseconds: 1_000_000_000)
        counter.frameCompleted(at: t, into: &stats)
        for g in gapsMs {
            t = t + .milliseconds(Int64(g))
            counter.frameCompleted(at: t, into: &stats)
        }
        return stats
    }

    @Test func steadyFramesAndShortStallsAreNoFreeze() {
        let s = run(Array(repeating: 33, count: 90) + [150, 200, 33])
        #expect(s.freezeCount == 0)
        #expect(s.totalFreezesDuration == 0)
    }

    @Test func gapsOverTwoHundredMillisecondsAddUp() {
        let s = run([33, 33, 450, 33, 33, 1200, 33, 201])
        #expect(s.freezeCount == 3)
        #expect(abs(s.totalFreezesDuration - 1.851) < 1e-9)
        #expect(abs(s.longestFreezeDuration - 1.2) < 1e-9)
    }
}
