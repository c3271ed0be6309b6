import NetworkCore
import Testing
@testable import RTP

@Suite struct TransportFeedbackTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)
    func at(ms: Double) -> Instant { t0 + .nanoseconds(Int64(ms * 1e6)) }

    func roundTrip(_ fb: TransportFeedback) throws -> TransportFeedback {
        let bytes = RTCPPacket.compound([.transportFeedback(fb)])
        let parsed = try RTCPPacket.parseCompound(bytes)
        guard case .transportFeedback(let back)? = parsed.first else { Issue.record("not feedback: \(parsed)"); return fb }
        return back
    }

    @Test func generatorReportsArrivalsAndLossesThatSurviveTheWire() throws {
        var g = TransportFeedbackGenerator()
        // 0..9 arrive 1 ms apart, 4 and 7 lost; one arrives 70 ms late (a large delta).
        for s in 0..<10 where s != 4 && s != 7 { g.received(sequence: UInt16(truncatingIfNeeded: 65530 + s), now: at(ms: Double(s))) }
        g.received(sequence: 65530 &+ 10, now: at(ms: 80))
        let out = g.poll(now: at(ms: 100), senderSSRC: 1, mediaSSRC: 2)
        #expect(out.count == 1)
        let fb = try roundTrip(out[0])
        #expect(fb == out[0])
        #expect(fb.baseSequence == 65530)
        #expect(fb.statusCount == 11)
        #expect(fb.received.map(\.offset) == [0, 1, 2, 3, 5, 6, 8, 9, 10])
        // Deltas are kept to the tick (250 µs).
        let ticks = fb.received.map(\.ticks)
        #expect(ticks[1] - ticks[0] == 4)
        #expect(ticks[8] - ticks[7] == 71 * 4)
        // Nothing new: no message; the next one starts after what was reported.
        #expect(g.poll(now: at(ms: 300), senderSSRC: 1, mediaSSRC: 2).isEmpty)
        g.received(sequence: 65530 &+ 12, now: at(ms: 310))
        let next = g.poll(now: at(ms: 400), senderSSRC: 1, mediaSSRC: 2)
        #expect(next.first?.baseSequence == 65530 &+ 11)
        #expect(next.first?.received.map(\.offset) == [1])
        #expect(next.first?.feedbackCount == 1)
    }

    @Test func longLossBurstsUseRunLengthsAndNegativeDeltasTwoBytes() throws {
        let fb = TransportFeedback(senderSSRC: 9, mediaSSRC: 0, baseSequence: 100, statusCount: 300, referenceTime: -3,
                                   feedbackCount: 7, received: [(0, 10), (1, 8), (250, 2000), (299, 2001)])
        let back = try roundTrip(fb)
        #expect(back == fb)
        var bytes: [UInt8] = []
        RTCPPacket.transportFeedback(fb).serialize(into: &bytes)
        #expect(bytes.count < 40)   // run lengths, not 300 symbols
    }

    @Test func senderPairsFeedbackWithSendTimesOnce() {
        var h = SendHistory()
        for s in 0..<5 { h.sent(sequence: UInt16(truncatingIfNeeded: 65534 + s), size: 1000 + s, at: at(ms: Double(s * 10))) }
        let fb = TransportFeedback(senderSSRC: 1, mediaSSRC: 0, baseSequence: 65534, statusCount: 5, referenceTime: 0,
                                   feedbackCount: 0, received: [(0, 0), (1, 40), (3, 80)])
        let (r, unknown) = h.results(for: fb, now: t0)
        #expect(unknown == 0)
        #expect(r.map(\.size) == [1000, 1001, 1002, 1003, 1004])
        #expect(r.map { $0.arrivalMicros } == [0, 10_000, nil, 20_000, nil])
        // The same message again: neither arrivals nor losses are counted twice.
        #expect(h.results(for: fb, now: t0).results.isEmpty)
        // A later message says the lost 65536 arrived after all: reordered, not lost.
        let later = TransportFeedback(senderSSRC: 1, mediaSSRC: 0, baseSequence: 0, statusCount: 1, referenceTime: 0,
                                      feedbackCount: 1, received: [(0, 120)])
        let (r2, _) = h.results(for: later, now: t0)
        #expect(r2.map(\.size) == [1002])
        #expect(r2.first?.late == true)
    }

    @Test func aReorderedArrivalBehindTheReportedRangeIsReportedNext() throws {
        var g = TransportFeedbackGenerator()
        var h = SendHistory()
        for s in 0..<6 { h.sent(sequence: UInt16(s), size: 500, at: at(ms: Double(s))) }
        for s in [0, 1, 3, 4] as [UInt16] { g.received(sequence: s, now: at(ms: 20 + Double(s))) }
        let first = g.poll(now: at(ms: 30), senderSSRC: 1, mediaSSRC: 2)
        var lost = 0
        for fb in first { lost += h.results(for: try roundTrip(fb), now: t0).results.filter { $0.arrivalMicros == nil }.count }
        #expect(lost == 1)    // 2 had not come yet
        g.received(sequence: 2, now: at(ms: 60))
        g.received(sequence: 5, now: at(ms: 61))
        let second = g.poll(now: at(ms: 90), senderSSRC: 1, mediaSSRC: 2)
        #expect(second.first?.baseSequence == 2)
        var results: [SendHistory.Result] = []
        for fb in second { results += h.results(for: try roundTrip(fb), now: t0).results }
        // 2 arrived late (taking back its loss); 3 and 4 are not counted again; 5 is new.
        #expect(results.count == 2)
        #expect(results.filter(\.late).count == 1)
        #expect(results.allSatisfy { $0.arrivalMicros != nil })
    }

    @Test func lyingFeedbackIsBoundedAndCounted() throws {
        var h = SendHistory()
        h.sent(sequence: 5, size: 100, at: t0)
        // Feedback for packets never sent.
        let fb = TransportFeedback(senderSSRC: 1, mediaSSRC: 0, baseSequence: 30000, statusCount: 65535, referenceTime: 0,
                                   feedbackCount: 0, received: [(0, 0)])
        let (r, unknown) = h.results(for: fb, now: t0)
        #expect(r.isEmpty)
        #expect(unknown == 65535)
        // A run claiming 8 000 received packets in a 20-byte message is refused while parsing.
        var bytes: [UInt8] = [0x8F, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x1F, 0x40, 0, 0, 0, 0, 0x3F, 0x40, 1, 2]
        bytes.writeU16(UInt16(bytes.count / 4 - 1), at: 2)
        #expect(throws: RTPParseError.self) { try RTCPPacket.parseCompound(bytes) }
    }

    /// The transport thread's path (serialized by the generator, read in place, paired into
    /// reused storage) gives what the owned messages give.
    @Test func inPlacePathsMatchTheOwnedMessages() throws {
        var a = TransportFeedbackGenerator(), b = TransportFeedbackGenerator()
        var ha = SendHistory(), hb = SendHistory()
        var wire: [UInt8] = []
        var results: [SendHistory.Result] = []
        var seq: UInt16 = 65_000
        for round in 0..<40 {
            // Losses, a reordered pair, a duplicate, and a gap too long for one delta.
            for k in 0..<30 {
                let s = seq &+ UInt16(k)
                ha.sent(sequence: s, size: 1000 + k, at: at(ms: Double(round * 100 + k)))
                hb.sent(sequence: s, size: 1000 + k, at: at(ms: Double(round * 100 + k)))
            }
            var order = Array(0..<30).filter { ($0 + round) % 7 != 3 }
            order.swapAt(4, 5)
            order.append(order[10])
            for k in order {
                let ms = Double(round * 100 + k) + (k == 20 && round % 5 == 0 ? 9000 : 30)
                a.received(sequence: seq &+ UInt16(k), now: at(ms: ms))
                b.received(sequence: seq &+ UInt16(k), now: at(ms: ms))
            }
            seq &+= 30
            let now = at(ms: Double(round * 100 + 99))
            let owned = a.poll(now: now, senderSSRC: 1, mediaSSRC: 2)
            wire.removeAll(keepingCapacity: true)
            let n = b.poll(now: now, senderSSRC: 1, mediaSSRC: 2, appendingTo: &wire)
            #expect(n == owned.count)
            #expect(wire == RTCPPacket.compound(owned.map { .transportFeedback($0) }))
            let views = try RTCPCompound(parsing: wire).compactMap { (p: RTCPPacketView) -> TransportFeedbackView? in
                if case .transportFeedback(let v) = p { return v }
                return nil
            }
            #expect(views.map { TransportFeedback($0) } == owned)
            for (fb, view) in zip(owned, views) {
                let (expected, unknown) = ha.results(for: fb, now: now)
                #expect(hb.results(for: view, now: now, into: &results) == unknown)
                #expect(results == expected)
            }
        }
    }

    @Test func compoundViewsMatchTheParsedPackets() throws {
        let report = ReceptionReport(ssrc: 2, fractionLost: 3, cumulativeLost: -5, highestSequence: 70_000, jitter: 90, lastSR: 7, delaySinceLastSR: 8)
        let packets: [RTCPPacket] = [
            .senderReport(ssrc: 1, ntp: 99, rtpTimestamp: 3, packetCount: 4, octetCount: 5, reports: [report, report]),
            .receiverReport(ssrc: 1, reports: [report]),
            .sourceDescription([(1, "a-cname-longer-than-fifteen-bytes"), (3, "")]),
            .nack(sender: 1, media: 2, lost: [100, 101, 103, 116, 117, 140, 65535, 0]),
            .pli(sender: 1, media: 2),
            .bye(ssrcs: [1], reason: "bye"),
        ]
        let wire = RTCPPacket.compound(packets)
        let compound = try RTCPCompound(parsing: wire)
        #expect(compound.map(\.owned) == packets)
        var nacked: [UInt16] = []
        for case .nack(_, _, let lost) in compound { nacked.append(contentsOf: lost) }
        #expect(nacked == [100, 101, 103, 116, 117, 140, 65535, 0])
        // One bad packet rejects the compound before any part is read.
        var broken = wire
        broken.append(contentsOf: [0x80, 201, 0, 9])
        #expect(throws: RTPParseError.self) { try RTCPCompound(parsing: broken) }
    }
}

/// A bottleneck on virtual time: frames leave at the controller's target, queue at the
/// link's rate (dropped past 100 ms of queue, as `tc tbf latency 100ms` does) and the
/// receiver's feedback comes back every 100 ms.
struct Bottleneck {
    var capBps: Double
    var oneWayMs = 20.0
    var maxQueueMs = 100.0
    var linkFreeAtMs = 0.0
    var lost = 0
    var lossTimesMs: [Double] = []
    var sent = 0
    var maxQueueSeenMs = 0.0
    /// Random loss (a radio link), decided by a seeded generator.
    var randomLoss = 0.0
    var rng = SplitMix(seed: 7)
    /// Each packet's delay varies by up to ± this, independently: packets overtake each other.
    var jitterMs = 0.0

    /// A token bucket's allowance (as `tc tbf burst`): while the queue is empty, this many
    /// bytes pass at line rate, refilled at the cap's rate. Short probes then see no limit.
    var burstBytes = 0.0
    var tokens = 0.0
    var tokensAtMs = 0.0

    /// Arrival time in ms, or nil when the queue was full.
    mutating func send(bytes: Int, atMs t: Double) -> Double? {
        sent += 1
        if randomLoss > 0, rng.nextUnit() < randomLoss { lost += 1; return nil }
        if burstBytes > 0 {
            tokens = min(burstBytes, tokens + max(0, t - max(tokensAtMs, linkFreeAtMs)) * capBps / 8000)
            tokensAtMs = t
            if linkFreeAtMs <= t, tokens >= Double(bytes) {
                tokens -= Double(bytes)
                return t + oneWayMs
            }
        }
        let start = max(t, linkFreeAtMs)
        let queued = start - t
        guard queued <= maxQueueMs else { lost += 1; lossTimesMs.append(t); return nil }
        maxQueueSeenMs = max(maxQueueSeenMs, queued)
        linkFreeAtMs = start + Double(bytes * 8) / capBps * 1000
        return linkFreeAtMs + oneWayMs + (jitterMs > 0 ? (rng.nextUnit() * 2 - 1) * jitterMs : 0)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func nextUnit() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }
}

@Suite struct DelayBasedEstimatorTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)

    /// Runs `seconds` of a 30 fps call through `link` whose cap follows `cap(t)`; returns
    /// the target over time (ms, kbps).
    func run(seconds: Double, cap: (Double) -> Double, delay: ((Double) -> Double)? = nil, sending: ((Double) -> Int?)? = nil,
             controller c: inout BitrateController, link: inout Bottleneck) -> [(Double, Int)] {
        var history = SendHistory()
        var generator = TransportFeedbackGenerator()
        var seq: UInt16 = 0
        var inFlight: [(arrivalMs: Double, seq: UInt16)] = []
        var trace: [(Double, Int)] = []
        var probe: (ProbeController.Cluster, Int, Double)? = nil
        var t = 0.0
        var nextFrame = 0.0
        while t < seconds * 1000 {
            link.capBps = cap(t)
            if let delay { link.oneWayMs = delay(t) }
            if t >= nextFrame {
                nextFrame += 1000.0 / 30
                var bytes = (sending?(t) ?? c.targetKbps) * 1000 / 8 / 30
                while bytes > 0 {
                    let size = min(1200, bytes)
                    bytes -= size
                    history.sent(sequence: seq, size: size, at: t0 + .nanoseconds(Int64(t * 1e6)))
                    if let a = link.send(bytes: size, atMs: t) { inFlight.append((a, seq)) }
                    seq &+= 1
                }
            }
            if probe == nil, let cluster = c.probeCluster(now: t0 + .nanoseconds(Int64(t * 1e6))) { probe = (cluster, 0, t) }
            while let (cluster, sentCount, nextMs) = probe, nextMs <= t {
                history.sent(sequence: seq, size: cluster.packetSize + 40, at: t0 + .nanoseconds(Int64(nextMs * 1e6)), probe: cluster.id)
                if let a = link.send(bytes: cluster.packetSize + 40, atMs: nextMs) { inFlight.append((a, seq)) }
                seq &+= 1
                probe = sentCount + 1 < cluster.packets ? (cluster, sentCount + 1, nextMs + cluster.interval.seconds * 1000) : nil
            }
            for p in inFlight where p.arrivalMs <= t { generator.received(sequence: p.seq, now: t0 + .nanoseconds(Int64(p.arrivalMs * 1e6))) }
            inFlight.removeAll { $0.arrivalMs <= t }
            for fb in generator.poll(now: t0 + .nanoseconds(Int64(t * 1e6)), senderSSRC: 1, mediaSSRC: 0) {
                // The feedback takes the return trip; applying it now, 20 ms early, is close enough.
                let now = t0 + .nanoseconds(Int64((t + link.oneWayMs) * 1e6))
                let results = history.results(for: fb, now: now).results
                _ = c.receivedTransportFeedback(results, arrived: history.packetsArrived, lost: history.packetsLost, now: now)
            }
            trace.append((t, c.targetKbps))
            t += 1
        }
        return trace
    }

    @Test func aStepFromTwoToOneMegabitIsFollowedBeforeTheQueueOverflows() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        var link = Bottleneck(capBps: 2_500_000)
        let trace = run(seconds: 20, cap: { $0 < 5000 ? 2_500_000 : ($0 < 12000 ? 1_000_000 : 2_500_000) }, controller: &c, link: &link)
        // Under the cap within a second of the step.
        let under = trace.first { $0.0 >= 5000 && $0.1 < 1000 }?.0
        #expect(under != nil && under! - 5000 <= 1000, "under the cap after \(under.map { $0 - 5000 } ?? -1) ms")
        // Losses only while the queue of the step is being found, then the sawtooth of
        // the delay-based estimate stays below the 100 ms buffer.
        let late = link.lossTimesMs.filter { $0 > 5500 }
        #expect(late.count <= 3, "lost after the first 500 ms: \(late)")
        #expect(link.lost < 40, "\(link.lost) packets lost of \(link.sent)")
        // Stays near the cap, not starved.
        let held = trace.filter { $0.0 > 8000 && $0.0 < 12000 }.map(\.1)
        #expect(held.min()! >= 700, "target fell to \(held.min()!) kbit/s under a 1 Mbit/s cap")
        // Back over 1.5 Mbit/s within 5 s of the cap lifting.
        let up = trace.first { $0.0 >= 12000 && $0.1 >= 1500 }?.0
        #expect(up != nil && up! - 12000 <= 5000, "back over 1.5 Mbit/s after \(up.map { $0 - 12000 } ?? -1) ms")
        // Found by a probe, not by growing a few percent a second into the free link.
        #expect(c.prober.probesSent >= 1)
    }

    /// Video pauses (the camera was unplugged) and only ~40 kbit/s goes out while the path
    /// queues for a moment (on the emulated board, a CPU stall): the overuse it reads must
    /// not cut the estimate to 0.85× of audio's rate, or video comes back at the floor.
    @Test func overuseWhileApplicationLimitedDoesNotCutToWhatWasSent() {
        var c = BitrateController(startKbps: 600, maximumKbps: 600)
        var link = Bottleneck(capBps: 5_000_000)
        let trace = run(seconds: 10, cap: { _ in 5_000_000 }, delay: { t in t >= 4000 && t < 4400 ? 20 + (t - 4000) / 4 : 20 },
                        sending: { t in t >= 2000 && t < 8000 ? 40 : nil }, controller: &c, link: &link)
        let lowest = trace.filter { $0.0 > 2000 && $0.0 < 8000 }.map(\.1).min()!
        #expect(c.delayBased!.overuseEvents >= 1, "the stall was not read as overuse: the test proves nothing")
        #expect(lowest >= 300, "the estimate fell to \(lowest) kbit/s while only audio was sent")
    }

    /// The other side of the application-limited rule: a sender at full rate whose path
    /// collapses (2.5 Mbit/s → 300 kbit/s) gets through far under half its estimate too,
    /// but it is not limited: the cut goes to what got through, within a second.
    @Test func aCollapsedPathUnderAFullRateSenderIsNotApplicationLimited() {
        var c = BitrateController(startKbps: 2000, maximumKbps: 2000)
        var link = Bottleneck(capBps: 2_500_000)
        let trace = run(seconds: 8, cap: { $0 < 4000 ? 2_500_000 : 300_000 }, controller: &c, link: &link)
        let after = trace.first { $0.0 >= 5000 }!.1
        #expect(after <= 400, "target \(after) kbit/s a second after the path fell to 300 kbit/s")
    }

    /// The path's own delay steps up by 100 ms mid-call (a route change, a handover): a
    /// queue that no cut drains is no queue of ours. The estimate takes the new delay as
    /// the path's within about a second, and the rate comes back instead of staying cut
    /// for the ten seconds the delay floor remembers.
    @Test func aStepInThePathsDelayIsNotAStandingQueue() {
        var c = BitrateController(startKbps: 1500, maximumKbps: 1500)
        var link = Bottleneck(capBps: 5_000_000)
        let trace = run(seconds: 20, cap: { _ in 5_000_000 }, delay: { $0 < 6000 ? 20 : 120 }, controller: &c, link: &link)
        let after = trace.filter { $0.0 > 9000 }.map(\.1)
        let mean = Double(after.reduce(0, +)) / Double(after.count)
        let lowest = trace.filter { $0.0 > 6000 }.map(\.1).min()!
        print("delay step: lowest \(lowest) kbit/s, mean from 3 s after \(Int(mean)) kbit/s, rebased \(c.delayBased!.baseDelaySteps)")
        #expect(c.delayBased!.baseDelaySteps == 1)
        #expect(lowest >= 500, "the step cut the target to \(lowest) kbit/s")
        #expect(mean >= 1300, "mean target \(mean) kbit/s from 3 s after the step")
        #expect(link.lost == 0)
    }

    /// 5 % random loss with room on the link is no queue: the delay-based half holds.
    @Test func randomLossWithoutAQueueIsNotOveruse() {
        var c = BitrateController(startKbps: 1500, maximumKbps: 1500)
        var link = Bottleneck(capBps: 5_000_000)
        link.randomLoss = 0.05
        _ = run(seconds: 10, cap: { _ in 5_000_000 }, controller: &c, link: &link)
        #expect(c.delayBased?.overuseEvents == 0)
        #expect(c.delayBased!.estimateBps >= 1_400_000)
    }

    /// 75 ms ± 30 ms one way, packets reordered, and room on the link: jitter is no
    /// queue, reordering no loss; the rate holds near its maximum.
    @Test func jitterThatReordersPacketsIsNotCongestion() {
        var c = BitrateController(startKbps: 1500, maximumKbps: 1500)
        var link = Bottleneck(capBps: 5_000_000)
        link.oneWayMs = 75
        link.jitterMs = 30
        let trace = run(seconds: 30, cap: { _ in 5_000_000 }, controller: &c, link: &link)
        let held = trace.filter { $0.0 > 5000 }.map(\.1)
        let mean = Double(held.reduce(0, +)) / Double(held.count)
        print("jitter: target min \(held.min()!) mean \(Int(mean)) kbit/s, overuse events \(c.delayBased!.overuseEvents), loss-based \(Int(c.lossBasedKbps))")
        #expect(c.lossBasedKbps >= 1400, "reordering read as loss")
        #expect(mean >= 1200, "mean target \(mean) kbit/s on a clean 5 Mbit/s path")
    }

    @Test func aSteadyLinkWithRoomIsNotReadAsOveruse() {
        var c = BitrateController(startKbps: 1500, maximumKbps: 1500)
        var link = Bottleneck(capBps: 5_000_000)
        let trace = run(seconds: 10, cap: { _ in 5_000_000 }, controller: &c, link: &link)
        #expect(trace.map(\.1).min()! >= 1400)
        #expect(c.delayBased?.overuseEvents == 0)
    }
}

@Suite struct PacerTests {
    let t0 = Instant(nanoseconds: 10_000_000_000)

    /// A 30 kB keyframe at a 1 Mbit/s target leaves over ~100 ms (2.5 Mbit/s), not at once.
    @Test func aKeyframeIsSpreadAtTheMultipleOfTheTarget() {
        var p = Pacer(targetBps: 1_000_000)
        var queued = 25 * 1200
        var t = t0
        var sentAt: [Double] = []
        while queued > 0 {
            if p.maySend(now: t, queuedBytes: queued) {
                p.sent(bytes: 1200)
                queued -= 1200
                sentAt.append((t - t0).seconds * 1000)
            } else {
                t = max(p.nextSend(now: t, queuedBytes: queued), t + .microseconds(100))
            }
        }
        #expect(sentAt.last! > 80 && sentAt.last! < 120, "last packet after \(sentAt.last!) ms")
        // Never more than the burst allowance at once.
        #expect(sentAt.filter { $0 < 1 }.count <= 3)
    }

    /// A queue that would take longer than 250 ms drains faster than the pacing rate.
    @Test func aLongQueueDrainsWithinItsBound() {
        var p = Pacer(targetBps: 100_000)
        var queued = 100 * 1200
        var t = t0
        while queued > 0 {
            if p.maySend(now: t, queuedBytes: queued) { p.sent(bytes: 1200); queued -= 1200 }
            else { t = max(p.nextSend(now: t, queuedBytes: queued), t + .microseconds(100)) }
        }
        #expect((t - t0).seconds < 0.3)
    }

}
