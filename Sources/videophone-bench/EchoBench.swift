import AudioProcessing
import Codecs
import MediaDevices
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// `videophone-bench --aec N`: the microphone stage on the echo scenario (EchoScenario:
/// espeak-ng talkers, far-end single talk, near-end single talk, double talk, an echo path
/// change, silence) through real Opus, in N rooms (direct path 30–120 ms, 3–10 dB down).
func runEchoBench(runs: Int) {
    guard let base = try? EchoScenario.withSpeech() else {
        print("## Echo cancellation: espeak-ng missing (toolchain/install-test-deps.sh installs it)")
        return
    }
    print("## Echo cancellation, noise suppression, gain control (\(AudioProcessor.library)), \(runs) rooms, 10 ms frames at 48 kHz")
    var erle: [Double] = [], erleOff: [Double] = [], dt: [Double] = [], reconv: [Double] = [], cpu: [Double] = [], cpuP90: [Double] = []
    var never = 0
    for i in 0..<runs {
        var s = base
        let delays = [30.0, 55, 80, 100, 120]
        s.roomA = RoomResponse(delayMs: delays[i % delays.count], attenuationDB: 3 + Double(i * 7 % 8), seed: UInt64(3 + i))
        s.roomB = RoomResponse(delayMs: delays[(i + 2) % delays.count], attenuationDB: 3 + Double((i + 3) * 5 % 8), seed: UInt64(100 + i))
        let opusOff = (try! OpusEncoder(channels: 1), try! OpusDecoder(channels: 1))
        let off = s.run(nil) { pcm in opusOff.0.encode(pcm).flatMap { opusOff.1.decode($0[...]) }.map(Array.init) ?? [] }
        let opus = (try! OpusEncoder(channels: 1), try! OpusDecoder(channels: 1))
        guard let stage = try? AudioProcessor(settings: .speakerphone) else { print("library failed to start"); return }
        let r = s.run(stage) { pcm in opus.0.encode(pcm).flatMap { opus.1.decode($0[...]) }.map(Array.init) ?? [] }
        erle.append(r.erleDB); erleOff.append(off.erleDB); dt.append(r.doubleTalkNearChangeDB)
        if let t = r.reconvergedAfter { reconv.append(t * 1000) } else { never += 1 }
        cpu.append(r.cpuMsMedian * 1000); cpuP90.append(r.cpuMsP90 * 1000)
    }
    print("ERLE, far-end single talk 2–8 s       \(spread(erle, "dB"))   (stage off: \(spread(erleOff, "dB")))")
    print("near-end level change in double talk  \(spread(dt, "dB"))")
    print("echo path change → ERLE ≥ 20 dB after \(spread(reconv, "ms"))\(never > 0 ? "  (never in \(never) rooms)" : "")")
    print("CPU per 10 ms frame (thread time)     \(spread(cpu, "µs"))   p90 \(spread(cpuP90, "µs"))")
    print("  = \(fmt((cpu.sorted()[cpu.count / 2]) / 10_000 * 100, 2)) % of one core (median)")
    print("delay added: none buffered (frames are processed in place as captured); only the processing time above")
    print()
}
