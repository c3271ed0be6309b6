import NetworkCore
import Testing
@testable import RTP

@Suite struct QueueDrainHoldTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)
    let calm = Duration.milliseconds(40)

    /// Feeds one queue sample per 50 ms feedback message; returns the hold's start (ms).
    func feed(_ hold: inout QueueDrainHold, _ queuesMs: [Int64], jitterBound: Duration? = nil) -> Int? {
        var started: Int? = nil
        for (i, q) in queuesMs.enumerated() {
            if hold.queueMeasured(.milliseconds(q), jitterBound: jitterBound ?? calm, now: t0 + .milliseconds(50 * i)), started == nil { started = 50 * i }
        }
        return started
    }

    @Test func aQueueFillingFastHoldsForAboutItsLength() {
        var h = QueueDrainHold()
        // 0 → 80 ms in 100 ms: sending at nearly twice what the link passes.
        let start = feed(&h, [0, 10, 45, 80])
        #expect(start == 150)
        let s = t0 + .milliseconds(150)
        let during = [h.maySend(now: s + .milliseconds(1)), h.maySend(now: s + .milliseconds(95))]  // 1.25 × 80 ms = 100 ms
        let after = h.maySend(now: s + .milliseconds(101))
        #expect(during == [false, false] && after)
        #expect(h.framesSkipped == 2 && h.holds == 1)
    }

    @Test func aQueueThatCreepsUpDoesNotHold() {
        // A probe that overshot by 30 %: the queue grows 0.2–0.3 ms per ms.
        var h = QueueDrainHold()
        #expect(feed(&h, [30, 42, 55, 66, 76, 85, 94, 100]) == nil)
        let may = h.maySend(now: t0 + .milliseconds(400))
        #expect(may)
    }

    @Test func jitterAloneDoesNotHold() {
        // ±30 ms of jitter: the estimator's threshold is about 100 ms, and delays jump.
        var h = QueueDrainHold()
        #expect(feed(&h, [5, 60, 10, 70, 0, 65], jitterBound: .milliseconds(100)) == nil)
    }

    @Test func oneHoldPerCongestionEventAndNeverAFreeze() {
        var h = QueueDrainHold()
        // A queue of 300 ms (a deep buffer): the hold stops at 150 ms, under a freeze.
        #expect(feed(&h, [0, 150, 300]) == 100)
        let held = h.maySend(now: t0 + .milliseconds(240))
        let free = h.maySend(now: t0 + .milliseconds(251))
        #expect(!held && free)
        // Still long and growing half a second later: no second hold within the second.
        let again = [h.queueMeasured(.milliseconds(200), jitterBound: calm, now: t0 + .milliseconds(550)),
                     h.queueMeasured(.milliseconds(300), jitterBound: calm, now: t0 + .milliseconds(600))]
        #expect(again == [false, false] && h.holds == 1)
        // After it, the next event holds again.
        let next = [h.queueMeasured(.milliseconds(10), jitterBound: calm, now: t0 + .milliseconds(1050)),
                    h.queueMeasured(.milliseconds(90), jitterBound: calm, now: t0 + .milliseconds(1150))]
        #expect(next == [false, true])
    }
}
