import Codecs
import NetworkCore
import RTP

/// The receive side of a call's audio: Opus packets from the network go into an
/// ``AudioJitterBuffer``; the speaker's clock pulls one 20 ms frame at a time, decoded,
/// rebuilt from the next packet's in-band FEC, or concealed by the decoder (PLC).
///
/// The transport thread only inserts (no decoding, no waiting on the sound card); the
/// speaker's thread decodes. One lock between them, held for microseconds.
final class AudioPlayout: @unchecked Sendable {
    private let lock = Lock()
    private var buffer = AudioJitterBuffer()
    private let decoder: OpusDecoder?
    private var figures = Figures()
    /// The RTP timestamp of the frame the last render played (nil: silence); the speaker
    /// thread hands it to lip sync.
    private(set) var playedTimestamp: UInt32?

    struct Figures: Sendable {
        var decoded: UInt64 = 0
        var decodeErrors: UInt64 = 0
        var concealedSamples: UInt64 = 0
        var recoveredByFEC: UInt64 = 0
        var counters = AudioJitterBuffer.Counters()
        var targetDelayMs = 0.0
        var currentDelayMs = 0.0
        var jitterMs = 0.0
        /// RMS of the last frame played from the peer, 0...1 (W3C audioLevel).
        var audioLevel = 0.0
        /// W3C totalAudioEnergy / totalSamplesDuration: Σ level² × seconds over frames played
        /// from the peer, and their seconds (mean power over a stretch = Δenergy / Δduration).
        var totalAudioEnergy = 0.0
        var totalSamplesDuration = 0.0
    }

    init() { decoder = try? OpusDecoder(channels: 1) }

    /// From the transport thread: one received packet.
    func insert(_ payload: ArraySlice<UInt8>, sequence: UInt16, timestamp: UInt32, arrival: Instant) {
        lock.withLock { buffer.insert(sequence: sequence, timestamp: timestamp, payload: payload, arrival: arrival) }
    }

    /// From the speaker's thread: fills one 20 ms frame; false when there is nothing to play.
    func render(into out: UnsafeMutableBufferPointer<Int16>) -> Bool {
        lock.withLock {
            guard let decoder else { return false }
            let playout = buffer.pop()
            playedTimestamp = buffer.playedTimestamp
            let pcm: ArraySlice<Int16>?
            switch playout {
            case .silence:
                return false
            case .packet(let p):
                if let decoded = decoder.decode(p[...]) {
                    figures.decoded += 1
                    pcm = decoded
                } else {
                    // Corrupt: conceal it like a lost one.
                    figures.decodeErrors += 1
                    figures.concealedSamples += UInt64(out.count)
                    pcm = decoder.decode(nil)
                }
            case .lost(let next):
                if let next, let fec = decoder.decode(next[...], fec: true) {
                    figures.recoveredByFEC += 1
                    pcm = fec
                } else {
                    pcm = decoder.decode(nil)
                }
                figures.concealedSamples += UInt64(out.count)
            }
            guard let pcm, !pcm.isEmpty else { out.update(repeating: 0); return true }
            let n = min(pcm.count, out.count)
            var energy = 0.0
            for i in 0..<n {
                let v = pcm[pcm.startIndex + i]
                out[i] = v
                energy += Double(v) * Double(v)
            }
            if n < out.count { (out.baseAddress! + n).update(repeating: 0, count: out.count - n) }
            figures.audioLevel = (energy / Double(out.count)).squareRoot() / 32768
            let seconds = Double(out.count) / 48_000
            figures.totalAudioEnergy += energy / Double(out.count) / (32768 * 32768) * seconds
            figures.totalSamplesDuration += seconds
            return true
        }
    }

    /// The decoder's figures with the jitter buffer's, as of now.
    var current: Figures {
        lock.withLock {
            var f = figures
            f.counters = buffer.counters
            f.targetDelayMs = Double(buffer.targetFrames) * buffer.frameDuration.milliseconds
            f.currentDelayMs = buffer.currentDelay.milliseconds
            f.jitterMs = buffer.jitterMs
            return f
        }
    }
}
