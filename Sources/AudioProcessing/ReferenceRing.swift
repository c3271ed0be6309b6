import Synchronization

/// A single-producer single-consumer ring of far-end samples: the speaker's thread writes
/// what it is about to play, the microphone's thread reads it as the canceller's
/// reference. Neither thread ever waits for the other (no lock), and nothing allocates
/// after `init`. When full, the writer drops the new samples (counted): the reader is late
/// and the stage re-aligns from what is there.
final class ReferenceRing: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<Int16>
    private let capacity: Int
    /// Total samples written / read since start; their difference is the fill.
    private let written = Atomic<Int>(0)
    private let read = Atomic<Int>(0)
    /// Playback delay the writer saw with its latest write, in samples.
    private let playbackDelay = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0)
    }

    deinit { storage.deallocate() }

    /// Writer: samples about to be played; `delaySamples` is how long until the first of
    /// them is heard (what the sound card has queued ahead of them).
    func write(_ samples: UnsafeBufferPointer<Int16>, delaySamples: Int) {
        let w = written.load(ordering: .relaxed)
        let r = read.load(ordering: .acquiring)
        guard w - r + samples.count <= capacity else {
            dropped.add(samples.count, ordering: .relaxed)
            return
        }
        var index = w % capacity
        for s in samples {
            storage[index] = s
            index += 1
            if index == capacity { index = 0 }
        }
        playbackDelay.store(delaySamples, ordering: .relaxed)
        written.store(w + samples.count, ordering: .releasing)
    }

    /// Reader: samples available.
    var fill: Int { written.load(ordering: .acquiring) - read.load(ordering: .relaxed) }
    var latestPlaybackDelay: Int { playbackDelay.load(ordering: .relaxed) }
    var droppedSamples: Int { dropped.load(ordering: .relaxed) }

    /// Reader: copies `out.count` samples out; false (and nothing consumed) when fewer are there.
    func read(into out: UnsafeMutableBufferPointer<Int16>) -> Bool {
        let r = read.load(ordering: .relaxed)
        let w = written.load(ordering: .acquiring)
        guard w - r >= out.count else { return false }
        var index = r % capacity
        for i in 0..<out.count {
            out[i] = storage[index]
            index += 1
            if index == capacity { index = 0 }
        }
        read.store(r + out.count, ordering: .releasing)
        return true
    }

    /// Reader: throws away `n` samples (at most what is there).
    func skip(_ n: Int) {
        let r = read.load(ordering: .relaxed)
        let w = written.load(ordering: .acquiring)
        read.store(r + min(n, w - r), ordering: .releasing)
    }
}
