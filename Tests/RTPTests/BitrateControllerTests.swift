import NetworkCore
import Testing
@testable import RTP

@Suite struct BitrateControllerTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)
    func at(_ s: Double) -> Instant { t0 + .nanoseconds(Int64(s * 1e9)) }

    @Test func heavyLossGoesToWhatGotThrough() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        #expect(c.receivedReport(fractionLost: 64, now: at(0)) == 1425)   // 25 % lost → 75 % of it, less 5 %
        #expect(c.receivedReport(fractionLost: 128, now: at(1)) == 677)   // 50 % lost
    }

    /// Reports keep describing the overflowing queue for a while after a cut: measured
    /// against what was really sent, they do not cut again and again.
    @Test func repeatedReportsOfOneBottleneckDoNotCompound() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        #expect(c.receivedReport(fractionLost: 128, sendingKbps: 1900, now: at(0)) == 903)   // 1900 × 0.5 × 0.95
        // A report 200 ms later still describes the queue before the cut: no second cut.
        #expect(c.receivedReport(fractionLost: 150, sendingKbps: 1700, now: at(0.2)) == nil)
        // Later, loss that persists is measured against what was really sent: the estimate
        // of what got through barely moves (a cut by the loss alone would halve it again).
        #expect(c.receivedReport(fractionLost: 100, sendingKbps: 1500, now: at(0.6)) == 868)  // 1500 × 0.61 × 0.95

    }

    @Test func moderateLossHolds() {
        var c = BitrateController(startKbps: 1000, maximumKbps: 2000)
        #expect(c.receivedReport(fractionLost: 13, now: at(0)) == nil)    // 5 %
        #expect(c.targetKbps == 1000)
    }

    @Test func noLossGrowsOncePerSecondUpToTheMaximum() {
        var c = BitrateController(startKbps: 1000, maximumKbps: 1200)
        #expect(c.receivedReport(fractionLost: 0, now: at(0)) == 1081)
        #expect(c.receivedReport(fractionLost: 0, now: at(0.5)) == nil)   // too soon
        #expect(c.receivedReport(fractionLost: 0, now: at(1)) == 1168)
        #expect(c.receivedReport(fractionLost: 0, now: at(2)) == 1200)
        #expect(c.receivedReport(fractionLost: 0, now: at(3)) == nil)
    }

    @Test func neverBelowTheMinimum() {
        var c = BitrateController(startKbps: 300, minimumKbps: 150, maximumKbps: 2000)
        for i in 0..<20 { _ = c.receivedReport(fractionLost: 200, now: at(Double(i))) }
        #expect(c.targetKbps == 150)
    }

    @Test func rembCapsAndReleases() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        #expect(c.receivedREMB(bitsPerSecond: 600_000) == 600)
        #expect(c.receivedReport(fractionLost: 0, now: at(0)) == nil)     // loss-based is higher; REMB rules
        #expect(c.receivedREMB(bitsPerSecond: 5_000_000) == 2000)
    }

    /// A link that drops to 500 kbit/s: the first report brings the rate under it, it
    /// stays within a few percent of it, and it recovers when the link does.
    @Test func followsABandwidthDrop() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        var capacity = 500.0
        var t = 0.0
        func step() {
            let sent = Double(c.targetKbps)
            let loss = max(0, (sent - capacity) / sent)
            _ = c.receivedReport(fractionLost: UInt8(min(255, loss * 256)), now: at(t))
            t += 1
        }
        step()
        #expect(c.targetKbps <= 500, "still at \(c.targetKbps) after one report")
        for _ in 0..<10 { step() }
        #expect(c.targetKbps <= 560 && c.targetKbps >= 400, "at \(c.targetKbps)")
        capacity = 2000
        for _ in 0..<20 { step() }
        #expect(c.targetKbps >= 1900)
    }
}

@Suite struct FeedbackWatchdogTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)
    func at(_ ms: Int64) -> Instant { t0 + .milliseconds(ms) }

    @Test func videoHoldsAfterASecondWithoutFeedbackProbesOnceASecondAndResumesWithIt() {
        var w = FeedbackWatchdog()
        // A peer that never sent feedback is never paused.
        #expect(w.decide(now: at(10_000)) == .send)
        w.feedbackArrived(now: at(10_000))
        for ms in stride(from: Int64(10_033), through: 11_000, by: 33) { #expect(w.decide(now: at(ms)) == .send) }
        var decisions: [FeedbackWatchdog.Decision] = []
        for ms in stride(from: Int64(11_033), through: 13_500, by: 33) { decisions.append(w.decide(now: at(ms))) }
        #expect(decisions.first == .hold)
        // About one frame a second goes while silent, so video's own feedback can restart.
        #expect(decisions.count(where: { $0 == .probe }) == 2, "\(decisions)")
        #expect(w.pauses == 1)
        w.feedbackArrived(now: at(13_510))
        #expect(w.decide(now: at(13_520)) == .send)
        #expect(w.decide(now: at(14_600)) == .hold)
        #expect(w.pauses == 2)
    }
}
