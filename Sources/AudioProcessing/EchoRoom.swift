#if canImport(Glibc)
import Glibc
#endif

/// A model of the box the speaker and microphone share: what reaches the microphone from
/// the speaker is the played signal delayed (30–120 ms: the speaker's and microphone's
/// buffering plus the sound's path), attenuated and smeared by a short room response (a
/// direct path and a few decaying reflections), through a gentle low-pass (the small
/// speaker). Used by the simulator's microphone, the tests and the bench.
public struct RoomResponse: Sendable, Equatable {
    /// Delay of the direct path, samples at 48 kHz.
    public var delaySamples: Int
    /// Taps as (extra delay in samples, gain); the direct path is (0, gain).
    public var taps: [(Int, Float)]
    /// One-pole low-pass coefficient (0: none).
    public var lowPass: Float

    public static func == (a: RoomResponse, b: RoomResponse) -> Bool {
        a.delaySamples == b.delaySamples && a.lowPass == b.lowPass && a.taps.map(\.0) == b.taps.map(\.0) && a.taps.map(\.1) == b.taps.map(\.1)
    }

    /// A room with the direct path `delayMs` away at `attenuationDB` below the speaker,
    /// and six reflections over the next ~25 ms, from a fixed seed.
    public init(delayMs: Double, attenuationDB: Double, seed: UInt64 = 1) {
        delaySamples = Int(delayMs * 48)
        let g = Float(pow(10, -attenuationDB / 20))
        var rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> Float {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return Float(rng % 10_000) / 10_000
        }
        var t: [(Int, Float)] = [(0, g)]
        for i in 1...6 {
            let at = Int(Float(i) * 4 * 48 * (0.6 + 0.8 * next()))
            let sign: Float = next() < 0.5 ? -1 : 1
            t.append((at, sign * g * 0.5 * Float(pow(0.6, Double(i)))))
        }
        taps = t
        lowPass = 0.3
    }

    /// The longest delay in the response, samples.
    public var span: Int { delaySamples + (taps.map(\.0).max() ?? 0) + 1 }
}

/// The echo path over time: remembers what the speaker played and gives what the
/// microphone hears from it. One writer and one reader per call of each; not thread safe
/// (the simulator wraps it in a lock).
public struct EchoPath: Sendable {
    public var room: RoomResponse
    private var history: [Float]
    private var written = 0
    private var lp: Float = 0

    public init(room: RoomResponse, maxDelaySamples: Int = 48_000) {
        self.room = room
        history = [Float](repeating: 0, count: maxDelaySamples)
    }

    /// The speaker played these samples.
    public mutating func played(_ samples: UnsafeBufferPointer<Int16>) {
        let n = history.count
        for s in samples {
            history[written % n] = Float(s)
            written += 1
        }
    }

    /// The echo of the speaker for the microphone's next `out.count` samples, added onto
    /// `out` (which holds the near-end sound). Sample k of `out` is heard at the same moment
    /// as the last `out.count - k` samples played... i.e. the microphone runs in step with
    /// the speaker: call `played` then `addEcho` for the same stretch of time.
    public mutating func addEcho(into out: UnsafeMutableBufferPointer<Int16>) {
        let n = history.count
        let start = written - out.count
        for k in 0..<out.count {
            var acc: Float = 0
            for (d, g) in room.taps {
                let idx = start + k - room.delaySamples - d
                if idx >= 0 && idx > written - n { acc += g * history[idx % n] }
            }
            lp = lp * room.lowPass + acc * (1 - room.lowPass)
            let v = Float(out[k]) + lp
            out[k] = Int16(max(-32768, min(32767, v.rounded())))
        }
    }
}

/// 16-bit mono PCM from a WAV file (espeak-ng writes 22 050 Hz), resampled to 48 kHz
/// (linear interpolation: enough for speech as a test signal). nil when unreadable.
public func loadSpeechWAV(_ bytes: [UInt8], gainDB: Double = 0) -> [Int16]? {
    func u32(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24 }
    func u16(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 }
    guard bytes.count > 44, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8) else { return nil }
    var i = 12
    var rate = 0, channels = 1, bits = 16
    while i + 8 <= bytes.count {
        let id = String(decoding: bytes[i..<i + 4], as: UTF8.self)
        var size = u32(i + 4)
        if id == "fmt " {
            channels = u16(i + 10); rate = u32(i + 12); bits = u16(i + 22)
        } else if id == "data" {
            guard rate > 0, bits == 16, channels >= 1 else { return nil }
            if size > bytes.count - i - 8 || size == 0 { size = bytes.count - i - 8 }
            let frames = size / (2 * channels)
            var src = [Float](repeating: 0, count: frames)
            for f in 0..<frames { src[f] = Float(Int16(truncatingIfNeeded: u16(i + 8 + f * 2 * channels))) }
            let g = Float(pow(10, gainDB / 20))
            let outCount = frames * 48_000 / rate
            var out = [Int16](repeating: 0, count: outCount)
            for k in 0..<outCount {
                let pos = Double(k) * Double(rate) / 48_000
                let a = Int(pos), frac = Float(pos - Double(a))
                let b = min(a + 1, frames - 1)
                let v = (src[a] * (1 - frac) + src[b] * frac) * g
                out[k] = Int16(max(-32768, min(32767, v.rounded())))
            }
            return out
        }
        i += 8 + size + (size & 1)
    }
    return nil
}
