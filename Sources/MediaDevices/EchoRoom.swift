import NetworkCore
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

    /// Samples played so far.
    public var samplesPlayed: Int { written }

    /// Adds the speaker's echo onto `out` (which holds the near-end sound), for the
    /// stretch of time whose last sample is played sample `end` − 1 (default: the latest
    /// played; the microphone then runs in step with the speaker: call `played` then
    /// `addEcho` for the same stretch of time).
    public mutating func addEcho(into out: UnsafeMutableBufferPointer<Int16>, endingAt end: Int? = nil) {
        let n = history.count
        let start = (end ?? written) - out.count
        for k in 0..<out.count {
            var acc: Float = 0
            for (d, g) in room.taps {
                let idx = start + k - room.delaySamples - d
                if idx >= 0 && idx > written - n && idx < written { acc += g * history[idx % n] }
            }
            lp = lp * room.lowPass + acc * (1 - room.lowPass)
            let v = Float(out[k]) + lp
            out[k] = Int16(max(-32768, min(32767, v.rounded())))
        }
    }
}

/// The emulated board's echo scenario (videophone-bench --echo-room): when the near-end
/// talker speaks and when the room changes, following what the far end does (the board's
/// peer loops speech with long silences between). I/O-free: fed one 20 ms chunk of what
/// the speaker played at a time.
///   - far-end burst 1: the near end is silent (far-end single talk; then silence);
///   - burst 2: the near end talks along (double talk) and goes on for 4 s after the far
///     end stops (near-end single talk);
///   - burst 3: silent again; 2.5 s into it the echo path changes;
///   - burst 4 starting: done (the scenario may end the call).
public struct EchoRoomSchedule: Sendable {
    /// Below this mean square level (−50 dBFS) the far end is not talking.
    public static let loud = 1e-5
    /// A far-end burst ends after this many quiet chunks (0.8 s: longer than a pause
    /// between words, far shorter than the silence between bursts).
    public static let hangover = 40
    /// Chunks the near end talks on after the far end's second burst ends (4 s).
    public static let nearAfterBurst = 200
    /// Chunks into the third burst when the echo path changes (2.5 s).
    public static let changeInto = 125

    /// Far-end bursts heard so far, whether the far end talks now, whether the near end
    /// does, and whether the fourth burst began (the scenario is over).
    public private(set) var burst = 0
    public private(set) var farActive = false
    public private(set) var nearOn = false
    public private(set) var done = false
    private var chunk = 0
    private var quiet = 0
    private var burstStart = 0
    private var burstEnd: Int?
    private var changed = false

    public init() {}

    /// One chunk's far-end level (mean square, full scale 1); true when the echo path is to
    /// change now.
    public mutating func step(farLevel: Double) -> Bool {
        chunk += 1
        if farLevel > Self.loud {
            quiet = 0
            if !farActive {
                farActive = true
                burst += 1
                burstStart = chunk
                burstEnd = nil
                if burst >= 4 { done = true }
            }
        } else if farActive {
            quiet += 1
            if quiet >= Self.hangover {
                farActive = false
                burstEnd = chunk - quiet
            }
        }
        nearOn = burst == 2 && (farActive || burstEnd.map { chunk - $0 < Self.nearAfterBurst } ?? false)
        if burst == 3 && farActive && !changed && chunk - burstStart == Self.changeInto {
            changed = true
            return true
        }
        return false
    }
}

/// ``loadSpeechWAV(_:gainDB:)`` of the file at `path`; nil when it cannot be read.
public func loadSpeechWAV(path: String, gainDB: Double = 0) -> [Int16]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes += buf[0..<n]
    }
    return loadSpeechWAV(bytes, gainDB: gainDB)
}

/// 16-bit mono PCM from a WAV file (espeak-ng writes 22 050 Hz), resampled to 48 kHz
/// (linear interpolation: enough for speech as a test signal); the first channel of a
/// multi-channel file. nil when it is not a 16-bit PCM WAV at 8–192 kHz.
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
            guard i + 24 <= bytes.count else { return nil }
            channels = u16(i + 10); rate = u32(i + 12); bits = u16(i + 22)
        } else if id == "data" {
            guard (8_000...192_000).contains(rate), bits == 16, channels >= 1 else { return nil }
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

/// The simulator's acoustics for one device: its speaker plays into the room, its
/// microphone hears a near-end talker (a WAV, looped) plus the speaker's echo. Shared by
/// the speaker's and the microphone's threads under one short lock (simulated devices
/// only; the real ones share nothing).
public final class SimulatedRoom: @unchecked Sendable {
    private let lock = Lock()
    private var path: EchoPath
    private let talker: [Int16]
    private var talkerPosition = 0
    private var readPosition: Int?

    /// `talker`: 48 kHz mono near-end speech (empty: none).
    public init(room: RoomResponse, talker: [Int16]) {
        path = EchoPath(room: room)
        self.talker = talker
    }

    /// Speaker thread: a frame played (silence included).
    public func speakerPlayed(_ frame: UnsafeBufferPointer<Int16>) { lock.withLock { path.played(frame) } }

    /// Microphone thread: the next `out.count` samples the microphone hears. The
    /// microphone keeps its own position in the speaker's timeline, so the echo delay stays
    /// constant whatever the two threads' phases; a gap of more than 60 ms re-syncs it.
    public func capture(into out: UnsafeMutableBufferPointer<Int16>) {
        for k in 0..<out.count {
            out[k] = talker.isEmpty ? 0 : talker[talkerPosition]
            talkerPosition = talker.isEmpty ? 0 : (talkerPosition + 1) % talker.count
        }
        lock.withLock {
            let latest = path.samplesPlayed
            var end = (readPosition ?? latest) + out.count
            if end > latest || latest - end > 2880 { end = latest }
            readPosition = end
            path.addEcho(into: out, endingAt: end)
        }
    }
}

/// A microphone for the simulator: the ``SimulatedRoom``'s near-end talker and echo,
/// 20 ms at a time, on its own thread.
public final class TalkerMicrophone: AudioSource, @unchecked Sendable {
    private let runner = PeriodicRunner()
    private let room: SimulatedRoom

    public init(room: SimulatedRoom) { self.room = room }

    public func start(_ onSamples: @escaping @Sendable ([Int16], Instant) -> Void) throws {
        var chunk = [Int16](repeating: 0, count: 960)
        runner.start(name: "talker-mic", interval: .milliseconds(20)) { [room] now in
            chunk.withUnsafeMutableBufferPointer { room.capture(into: $0) }
            onSamples(chunk, now)
        }
    }

    public func stop() { runner.stop() }
}
