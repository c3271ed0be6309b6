import PeerConnection
import Testing
@testable import VideoPhone

/// The fixed rings behind the latency figures: bounded, oldest first, and each new value seen
/// once by the metrics tick.
@Suite struct RecentSamplesTests {
    @Test func holdsTheLastCapacityValuesOldestFirst() {
        var r = RecentSamples(capacity: 4)
        #expect(r.values.isEmpty)
        for v in 1...3 { r.add(Double(v)) }
        #expect(r.values == [1, 2, 3])
        for v in 4...10 { r.add(Double(v)) }
        #expect(r.count == 4)
        #expect(r.total == 10)
        #expect(r.values == [7, 8, 9, 10])
    }

    @Test func forEachSinceGivesEachNewValueOnce() {
        var r = RecentSamples(capacity: 4)
        var seen: UInt64 = 0, got: [Double] = []
        r.add(1); r.add(2)
        seen = r.forEach(since: seen) { got.append($0) }
        #expect(got == [1, 2] && seen == 2)
        seen = r.forEach(since: seen) { got.append($0) }
        #expect(got == [1, 2])
        // More than the ring holds between two looks: only what it still has.
        for v in 3...9 { r.add(Double(v)) }
        got = []
        seen = r.forEach(since: seen) { got.append($0) }
        #expect(got == [6, 7, 8, 9] && seen == 9)
        // A stale count from a larger total (another ring) yields nothing, not a trap.
        got = []
        _ = r.forEach(since: 100) { got.append($0) }
        #expect(got.isEmpty)
    }

    @Test func statmResidentPagesParsed() {
        func parse(_ s: String) -> Int? { Array(s.utf8).withUnsafeBufferPointer { DeviceMetrics.parseStatmResident($0) } }
        #expect(parse("12345 678 90 1 0 2 0\n") == 678)
        #expect(parse("12345") == nil)
        #expect(parse("") == nil)
        #expect(parse("1 x") == nil)
        #expect(DeviceMetrics.residentBytes() > 0)
    }
}

/// The series the tick sets are made once, at start-up: a fresh device shows them at zero.
@Suite struct DeviceMetricsSeriesTests {
    @Test func liveSeriesExistFromStartUp() {
        let m = DeviceMetrics()
        let page = m.render()
        for line in ["videophone_in_call 0", "videophone_device_fault{part=\"speaker\"} 0",
                     "videophone_media_rate_bytes_per_second{direction=\"send\",kind=\"video\"} 0",
                     "videophone_frames_per_second{direction=\"receive\"} 0", "videophone_audio_processing_fault 0",
                     "videophone_audio_processing_enabled{stage=\"gain_control\"} 0", "videophone_encode_seconds_count 0",
                     "process_cpu_seconds_total"] {
            #expect(page.contains(line), "\(line)")
        }
        // The tick's handles are the registry's own series, not copies beside them.
        m.live.video.sendRate.set(to: 125_000)
        #expect(m.render().contains("videophone_media_rate_bytes_per_second{direction=\"send\",kind=\"video\"} 125000"))
    }
}
