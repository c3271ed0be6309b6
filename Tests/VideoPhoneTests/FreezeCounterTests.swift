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

@Suite struct DelayWindowTests {
    @Test func medianAndNinetyFifthOverTheLastValues() {
        var w = DelayWindow()
        #expect(w.percentiles() == nil)
        for v in 1...100 { w.add(Double(v)) }
        let (p50, p95) = try! #require(w.percentiles())
        #expect(p50 == 50)
        #expect(p95 == 96)
        // Only the last 256 count: old values roll out.
        for _ in 0..<DelayWindow.capacity { w.add(7) }
        #expect(w.percentiles()! == (7, 7))
    }
}
