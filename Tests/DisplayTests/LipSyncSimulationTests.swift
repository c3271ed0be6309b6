import Display
import NetworkCore
import RTP
import Testing

/// Lip sync on a simulated impaired network, in virtual time: a sender captures audio every
/// 20 ms and video every 33 ms and sends RTCP sender reports every second (each stream's
/// own random RTP base); every packet is delayed by 40 ± 30 ms (uniform, so packets also
/// reorder); the receiver runs the real `AudioJitterBuffer` on a 20 ms speaker clock and
/// the real `VideoPlayoutScheduler`. For each shown frame the offset is the flip time minus
/// the time the audio captured at the same instant is heard.
@Suite struct LipSyncSimulationTests {
    struct LCG {
        var state: UInt64
        mutating func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
    }

    func simulate(seconds: Int, jitterMs: Double, seed: UInt64) -> (offsets: [Double], lipSynced: Int, shown: Int) {
        var rng = LCG(state: seed)
        let audioBase = UInt32(truncatingIfNeeded: seed &* 7919), videoBase = UInt32(truncatingIfNeeded: seed &* 104_729)
        let ntpEpoch: UInt64 = 3_900_000_000
        func ntp(_ ms: Int) -> UInt64 { (ntpEpoch + UInt64(ms / 1000)) << 32 | UInt64(Double(ms % 1000) / 1000 * 4_294_967_296) }
        func local(_ ms: Double) -> Instant { Instant(nanoseconds: UInt64((ms + 10_000) * 1e6)) }
        func delay() -> Double { 40 + (rng.next() * 2 - 1) * jitterMs }

        // Events at the receiver, by arrival time (ms since capture start).
        enum Event { case audio(seq: UInt16, ts: UInt32), video(ts: UInt32, captureMs: Double), srAudio(UInt64, UInt32), srVideo(UInt64, UInt32) }
        var events: [(Double, Event)] = []
        let totalMs = seconds * 1000
        for k in 0..<(totalMs / 20) {
            events.append((Double(k * 20) + delay(), .audio(seq: UInt16(truncatingIfNeeded: k), ts: audioBase &+ UInt32(k * 960))))
        }
        for k in 0..<(totalMs * 30 / 1000) {
            let c = Double(k) * 1000 / 30
            events.append((c + delay(), .video(ts: videoBase &+ UInt32(k * 3000), captureMs: c)))
        }
        for s in 1..<seconds {
            let ms = s * 1000
            events.append((Double(ms) + delay(), .srAudio(ntp(ms), audioBase &+ UInt32(ms * 48))))
            events.append((Double(ms) + 7 + delay(), .srVideo(ntp(ms + 7), videoBase &+ UInt32((ms + 7) * 90))))
        }
        events.sort { $0.0 < $1.0 }

        var jb = AudioJitterBuffer()
        var sched = VideoPlayoutScheduler()
        // What the speaker played: (tick ms, audio RTP timestamp) to find when a capture instant is heard.
        var played: [(Double, UInt32)] = []
        var pendingFrames: [(due: Instant, captureMs: Double, mode: VideoPlayoutScheduler.Mode)] = []
        var offsets: [Double] = [], lipSynced = 0, shown = 0
        var e = 0
        var tick = 0.0
        while tick < Double(totalMs) + 200 {
            // Everything that arrives before this speaker tick.
            while e < events.count, events[e].0 <= tick {
                let (at, ev) = events[e]
                e += 1
                switch ev {
                case let .audio(seq, ts): jb.insert(sequence: seq, timestamp: ts, payload: [1], arrival: local(at))
                case let .srAudio(n, ts): sched.audioSenderReport(ntp: n, rtp: ts)
                case let .srVideo(n, ts): sched.videoSenderReport(ntp: n, rtp: ts)
                case let .video(ts, c):
                    let d = sched.schedule(rtp: ts, arrival: local(at), now: local(at + 2))   // 2 ms to decode
                    pendingFrames.append((d.due, c, d.mode))
                }
            }
            if case .silence = jb.pop() { sched.audioStopped() } else if let ts = jb.playedTimestamp {
                sched.audioPlayed(rtp: ts, heard: local(tick))
                played.append((tick, ts))
            }
            tick += 20
        }
        // The audio captured at c ms is heard when the speaker plays timestamp audioBase + 48·c.
        for f in pendingFrames where f.captureMs > 2000 {
            let want = audioBase &+ UInt32(f.captureMs * 48)
            guard let slot = played.firstIndex(where: { Int32(bitPattern: $0.1 &- want) > -960 && Int32(bitPattern: $0.1 &- want) <= 0 }) else { continue }
            let heard = played[slot].0 + Double(Int32(bitPattern: want &- played[slot].1)) / 48
            let flip = Double(f.due.nanoseconds) / 1e6 - 10_000
            offsets.append(flip - heard)
            shown += 1
            if f.mode == .lipSync { lipSynced += 1 }
        }
        return (offsets, lipSynced, shown)
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func within_minus125_plus45_for_95_percent_with_30ms_jitter(seed: UInt64) {
        let r = simulate(seconds: 60, jitterMs: 30, seed: seed)
        #expect(r.shown > 1500)
        let inside = r.offsets.filter { $0 >= -125 && $0 <= 45 }.count
        let share = Double(inside) / Double(r.offsets.count)
        #expect(share >= 0.95, "only \(share * 100) % within the window; lip-synced \(r.lipSynced) of \(r.shown)")
        // The rest arrive after their audio was heard (late: shown at once, audio ahead).
        #expect(r.lipSynced > r.shown * 7 / 10)
        let sorted = r.offsets.sorted()
        print("lip sync, 60 s, 40 ± 30 ms network delay, seed \(seed): \(fmt(share * 100)) % within −125/+45 ms; offset p5 \(fmt(sorted[sorted.count / 20])) p50 \(fmt(sorted[sorted.count / 2])) p95 \(fmt(sorted[sorted.count * 19 / 20])) ms; lip-synced \(r.lipSynced)/\(r.shown)")
    }

    func fmt(_ v: Double) -> String { String(Double(Int((v * 10).rounded())) / 10) }

    @Test func withoutSenderReportsTheJitterBufferStillPacesFrames() {
        var s = VideoPlayoutScheduler()
        let t0 = Instant(nanoseconds: 5_000_000_000)
        var last = t0
        for k in 0..<90 {
            let arrival = t0 + .milliseconds(Int64(k * 33 + (k * 7) % 25))
            let d = s.schedule(rtp: UInt32(k * 3000), arrival: arrival, now: arrival)
            #expect(d.mode == .jitterBuffer)
            #expect(d.due >= arrival && d.due <= arrival + s.maximumDelay)
            #expect(d.due >= last)   // never out of order
            last = d.due
        }
    }
}
