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

@Suite struct DelayWindowSortedCopyTests {
    /// The kept sorted copy gives what sorting the window's last values gives, through
    /// wrap-around, duplicates and values that are not delays.
    @Test func percentilesMatchSortingTheWindow() {
        var w = DelayWindow()
        var all: [Double] = []
        var rng = SystemRandomNumberGenerator()
        for n in 0..<2000 {
            let v = n % 7 == 0 ? 5 : Double(Int.random(in: 0..<500, using: &rng)) / 4
            w.add(v)
            all.append(v)
            if n % 97 == 0 { w.add(.nan); w.add(.infinity) }
            let last = all.suffix(DelayWindow.capacity).sorted()
            let (p50, p95) = try! #require(w.percentiles())
            #expect(p50 == last[(last.count - 1) / 2])
            #expect(p95 == last[min(last.count - 1, Int((Double(last.count) * 0.95).rounded(.down)))])
        }
    }
}
