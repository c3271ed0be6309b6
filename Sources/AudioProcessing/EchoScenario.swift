import Foundation
import MediaDevices
import NetworkCore

/// Speech from Debian's espeak-ng (a real talker's spectrum and pauses, generated when
/// needed rather than committed), 48 kHz mono. Throws when espeak-ng is missing.
public func synthesizeSpeech(_ text: String, voice: String, gainDB: Double = 0, speed: Int = 165) throws -> [Int16] {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("vp-speech-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).wav")
    defer { try? FileManager.default.removeItem(at: file) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["espeak-ng", "-v", voice, "-s", "\(speed)", "-w", file.path, text]
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0, let data = try? Data(contentsOf: file), let pcm = loadSpeechWAV([UInt8](data), gainDB: gainDB) else {
        throw AudioProcessingError(description: "espeak-ng (\(voice)) produced no speech: exit \(p.terminationStatus)")
    }
    return pcm
}

/// Texts for the far-end and near-end talkers.
public enum TestSpeech {
    public static let farEnd = """
        The quick brown fox jumps over the lazy dog. Please call me back when you get home tonight, \
        we need to talk about the garden and the roof. It rained all week and the gutters are full of leaves. \
        Seven hundred and twenty three, four thousand and eleven, ninety nine. How are the children doing at school?
        """
    public static let nearEnd = """
        Hello, yes, I can hear you quite well now. The weather here has been lovely, sunny and warm all day. \
        We went to the market and bought apples, pears and a big loaf of bread. Tell me more about the roof.
        """
}

/// The echo scenario the targets are measured on, run offline in 20 ms steps
/// through the real stage and a real Opus encoder and decoder (what the peer receives):
///
/// | phase | seconds | far end | near end | room |
/// |---|---|---|---|---|
/// | far-end single talk | 0–8 | speech | – | A |
/// | near-end single talk | 8–13 | – | speech | A |
/// | double talk | 13–18 | speech | the same speech as 8–13 | A |
/// | echo path change | 18–24 | speech | – | B |
/// | silence | 24–26 | – | – | B |
///
/// The microphone also hears a −66 dBFS noise floor.
public struct EchoScenario: Sendable {
    public var far: [Int16]
    public var near: [Int16]
    public var roomA = RoomResponse(delayMs: 60, attenuationDB: 6, seed: 3)
    /// After the change: another response and level at the same bulk delay (someone moved,
    /// the box was turned). `videophone-bench --aec` also jumps the bulk delay.
    public var roomB = RoomResponse(delayMs: 60, attenuationDB: 3, seed: 11)
    /// What the devices report: the speaker's queue and the microphone's.
    public var playbackDelay = Duration.milliseconds(20)
    public var captureDelay = Duration.milliseconds(10)
    /// How much of the table to run, seconds (26: all of it). The figures of phases cut
    /// off are 0 (no windows after the change, `reconvergedAfter` nil).
    public var seconds = 26

    public init(far: [Int16], near: [Int16]) { self.far = far; self.near = near }

    /// Generates both talkers with espeak-ng.
    public static func withSpeech() throws -> EchoScenario {
        EchoScenario(far: try synthesizeSpeech(TestSpeech.farEnd, voice: "en-us", gainDB: -4),
                     near: try synthesizeSpeech(TestSpeech.nearEnd, voice: "en-gb+f3", gainDB: -8))
    }

    public struct Result: Sendable {
        /// Far-end single talk, 2–8 s: echo at the microphone over echo in what is received, dB.
        public var erleDB: Double
        /// Near-end level received in double talk relative to near-end single talk, dB (negative: it dropped).
        public var doubleTalkNearChangeDB: Double
        /// ERLE in each 250 ms window after the echo path change that held far-end speech: (seconds after the change, dB).
        public var afterChange: [(Double, Double)]
        /// The first time after the change from which every window is ≥ 20 dB, seconds (nil: never).
        public var reconvergedAfter: Double?
        /// Level received in the silence phase, dBFS.
        public var silenceDBFS: Double
        /// Thread CPU time per 10 ms frame in the stage, ms (median, 90th percentile).
        public var cpuMsMedian: Double
        public var cpuMsP90: Double
        public var figures: AudioProcessingFigures?
    }

    /// Runs the scenario; `processor` nil measures the unprocessed path.
    public func run(_ processor: AudioProcessor?, encoder: (([Int16]) -> [Int16])) -> Result {
        let rate = 48_000, step = 960
        let total = max(1, min(26, seconds)) * rate
        var pathA = EchoPath(room: roomA), pathB = EchoPath(room: roomB)
        var echoA = EchoPath(room: roomA), echoB = EchoPath(room: roomB)
        var farChunk = [Int16](repeating: 0, count: step)
        var mic = [Int16](repeating: 0, count: step)
        var echoOnly = [Int16](repeating: 0, count: step)
        var received = [Int16](repeating: 0, count: total)
        var echoAtMic = [Int16](repeating: 0, count: total)
        var noise: UInt32 = 12345
        var cpu: [Double] = []
        cpu.reserveCapacity(total / step)
        let nearStart = 8 * rate
        for t in stride(from: 0, to: total, by: step) {
            let sec = Double(t) / Double(rate)
            let farOn = sec < 8 || (sec >= 13 && sec < 24)
            let nearOn = sec >= 8 && sec < 18
            for k in 0..<step {
                farChunk[k] = farOn ? far[(t + k) % far.count] : 0
                // Double talk repeats the near-end single-talk speech, so the two compare like for like.
                let ni = sec < 13 ? t + k - nearStart : t + k - nearStart - 5 * rate
                noise = noise &* 1_664_525 &+ 1_013_904_223
                let n = Int16(Int(noise >> 24) - 128) / 8
                mic[k] = (nearOn ? near[ni % near.count] : 0) &+ n
                echoOnly[k] = 0
            }
            let useB = sec >= 18
            farChunk.withUnsafeBufferPointer { f in
                processor?.referenceWillPlay(f, playbackDelay: playbackDelay)
                pathA.played(f); pathB.played(f); echoA.played(f); echoB.played(f)
            }
            mic.withUnsafeMutableBufferPointer { m in useB ? pathB.addEcho(into: m) : pathA.addEcho(into: m) }
            echoOnly.withUnsafeMutableBufferPointer { e in useB ? echoB.addEcho(into: e) : echoA.addEcho(into: e) }
            var out = mic
            if let processor {
                let c0 = threadCPUSeconds()
                out = processor.process(mic, captureDelay: captureDelay)
                cpu.append((threadCPUSeconds() - c0) * 1000 / 2)
            }
            let decoded = encoder(out)
            for k in 0..<min(step, decoded.count) { received[t + k] = decoded[k] }
            for k in 0..<step { echoAtMic[t + k] = echoOnly[k] }
        }
        func energy(_ x: [Int16], _ from: Double, _ to: Double) -> Double {
            var e = 0.0
            let lo = Int(from * Double(rate)), hi = min(x.count, Int(to * Double(rate)))
            guard lo < hi else { return 0 }
            for i in lo..<hi { e += Double(x[i]) * Double(x[i]) }
            return e
        }
        func dB(_ a: Double, _ b: Double) -> Double { 10 * log10(max(a, 1e-9) / max(b, 1e-9)) }
        let erle = dB(energy(echoAtMic, 2, 8), energy(received, 2, 8))
        let nearChange = dB(energy(received, 13, 18), energy(received, 8, 13))
        var windows: [(Double, Double)] = []
        var w = 18.0
        while w + 0.25 <= 24 {
            let e = energy(echoAtMic, w, w + 0.25)
            // Windows where the far end paused carry no echo to measure.
            if e / (0.25 * Double(rate)) > 300 * 300 { windows.append((w - 18, dB(e, energy(received, w, w + 0.25)))) }
            w += 0.25
        }
        var reconverged: Double?
        for (i, win) in windows.enumerated() where windows[i...].allSatisfy({ $0.1 >= 20 }) { reconverged = win.0; break }
        let silence = energy(received, 24.5, 26) / (1.5 * Double(rate))
        let sortedCPU = cpu.sorted()
        return Result(erleDB: erle, doubleTalkNearChangeDB: nearChange, afterChange: windows, reconvergedAfter: reconverged,
                      silenceDBFS: 10 * log10(max(silence, 1e-9) / (32768.0 * 32768.0)),
                      cpuMsMedian: sortedCPU.isEmpty ? 0 : sortedCPU[sortedCPU.count / 2],
                      cpuMsP90: sortedCPU.isEmpty ? 0 : sortedCPU[sortedCPU.count * 9 / 10],
                      figures: processor?.figures)
    }
}

/// CPU time of the calling thread, seconds.
public func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
