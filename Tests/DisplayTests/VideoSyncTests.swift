import Display
import NetworkCore
import Testing

@Suite struct VideoSyncTests {
    /// NTP for `seconds` since an arbitrary epoch.
    func ntp(_ seconds: Double) -> UInt64 {
        let whole = UInt64(seconds)
        return (whole + 3_900_000_000) << 32 | UInt64((seconds - Double(whole)) * 4_294_967_296)
    }
    let ntpBase = 3_900_000_000.0

    @Test func mappingBothWaysAndAcrossWrap() {
        let m = RTPClockMapping(ntp: ntp(10), rtpTimestamp: 0xFFFF_FF00, clockRate: 90_000)
        #expect(abs(m.ntpSeconds(ofRTP: 0xFFFF_FF00 &+ 90_000) - (ntpBase + 11)) < 1e-6)
        #expect(abs(m.ntpSeconds(ofRTP: 0xFFFF_FF00 &- 45_000) - (ntpBase + 9.5)) < 1e-6)
        #expect(m.rtp(atNTPSeconds: ntpBase + 12) == 0xFFFF_FF00 &+ 180_000)
    }

    /// A sender whose audio and video clocks start at unrelated timestamps, sending both
    /// captured at the same instants; the receiver's audio plays 120 ms after capture, video
    /// arrives 30 ms after capture (with jitter). Every frame must be due when its audio is
    /// heard.
    @Test func framesAreDueWhenTheirAudioIsHeard() {
        var s = VideoPlayoutScheduler()
        let videoBase: UInt32 = 1_234_567, audioBase: UInt32 = 4_000_000_000
        // Capture time c (seconds since the sender's epoch) ↔ receiver's monotonic clock: + 100 s.
        func local(_ c: Double) -> Instant { Instant(nanoseconds: UInt64((c + 100) * 1e9)) }
        func vts(_ c: Double) -> UInt32 { videoBase &+ UInt32(c * 90_000) }
        func ats(_ c: Double) -> UInt32 { audioBase &+ UInt32(c * 48_000) }
        s.videoSenderReport(ntp: ntp(1), rtp: vts(1))
        s.audioSenderReport(ntp: ntp(1.01), rtp: ats(1.01))
        var worst = 0.0
        for i in 0..<300 {
            let c = 2 + Double(i) / 30
            // The speaker just played audio captured 120 ms ago (anchor refreshed every 20 ms).
            s.audioPlayed(rtp: ats(c - 0.12), heard: local(c))
            let jitter = Double((i * 7919) % 30) / 1000
            let arrival = local(c + 0.03 + jitter)
            let d = s.schedule(rtp: vts(c), arrival: arrival, now: arrival)
            #expect(d.mode == .lipSync)
            worst = max(worst, abs((d.due - local(c + 0.12)).milliseconds))
        }
        #expect(worst < 1, "worst offset \(worst) ms")
    }

    @Test func lateFramesShowAtOnce() {
        var s = VideoPlayoutScheduler()
        s.videoSenderReport(ntp: ntp(0), rtp: 0)
        s.audioSenderReport(ntp: ntp(0), rtp: 0)
        let now = Instant(nanoseconds: 50_000_000_000)
        // Audio for t = 1 s is heard now; a video frame for t = 0.9 s is too late.
        s.audioPlayed(rtp: 48_000, heard: now)
        let d = s.schedule(rtp: 81_000, arrival: now, now: now)
        #expect(d == .init(due: now, mode: .late))
        // Without audio playing, the jitter buffer decides.
        s.audioStopped()
        #expect(s.schedule(rtp: 84_000, arrival: now, now: now).mode == .jitterBuffer)
    }

    @Test func jitterBufferAdaptsToJitter() {
        var calm = VideoPlayoutScheduler(), rough = VideoPlayoutScheduler()
        for i in 0..<200 {
            let t = Instant(nanoseconds: 10_000_000_000 + UInt64(i) * 33_333_333)
            _ = calm.schedule(rtp: UInt32(i * 3000), arrival: t + .milliseconds(2), now: t + .milliseconds(2))
            let j = Int64((i * 37) % 11) * 4   // 0…40 ms, in an irregular order
            _ = rough.schedule(rtp: UInt32(i * 3000), arrival: t + .milliseconds(j), now: t + .milliseconds(j))
        }
        #expect(calm.targetDelay < .milliseconds(15))
        #expect(rough.targetDelay > .milliseconds(30))
        #expect(rough.targetDelay <= rough.maximumDelay)
        // The frame that arrives on the fast path waits for the target; a late one does not wait longer.
        let t = Instant(nanoseconds: 10_000_000_000 + 200 * 33_333_333)
        let onTime = rough.schedule(rtp: 200 * 3000, arrival: t, now: t)
        #expect(onTime.due >= t && onTime.due <= t + rough.maximumDelay)
    }
}
