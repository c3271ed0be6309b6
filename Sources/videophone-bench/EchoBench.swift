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
func runEchoBench(runs: Int, level: String, tracker: Bool = true, verbose: Bool = getenv("VP_AEC_VERBOSE") != nil) {
    var settings = AudioProcessingSettings.speakerphone
    settings.echoLevel = AudioProcessingSettings.EchoLevel(rawValue: level) ?? .moderate
    settings.followBulkDelay = tracker
    guard let base = try? EchoScenario.withSpeech() else {
        print("## Echo cancellation: espeak-ng missing (toolchain/install-test-deps.sh installs it)")
        return
    }
    print("## Echo cancellation, noise suppression, gain control (\(AudioProcessor.library)), \(runs) rooms, suppression \(settings.echoLevel.rawValue), bulk delay tracker \(tracker ? "on" : "off"), 10 ms frames at 48 kHz")
    var erle: [Double] = [], erleOff: [Double] = [], dt: [Double] = [], cpu: [Double] = [], cpuP90: [Double] = []
    // Two kinds of echo path change: the room's response (same bulk delay: someone moves, the
    // box is turned) and a jump of the bulk delay (a device reopened with other buffering).
    var reconvResponse: [Double] = [], reconvJumpUp: [Double] = [], reconvJumpDown: [Double] = []
    var neverResponse = 0, neverUp = 0, neverDown = 0
    var jumpsSteady = 0, jumpsOnJump = 0
    let delays = [30.0, 55, 80, 100, 120]
    for i in 0..<runs {
        for kind in 0..<2 {
            var s = base
            let a = delays[i % delays.count]
            s.roomA = RoomResponse(delayMs: a, attenuationDB: 3 + Double(i * 7 % 8), seed: UInt64(3 + i))
            let b = kind == 0 ? a : delays[(i + 2) % delays.count]
            s.roomB = RoomResponse(delayMs: b, attenuationDB: 3 + Double((i + 3) * 5 % 8), seed: UInt64(100 + i))
            let opus = (try! OpusEncoder(channels: 1), try! OpusDecoder(channels: 1))
            let stage: AudioProcessor
            do { stage = try AudioProcessor(settings: settings) } catch { print("library failed to start: \(error)"); return }
            let r = s.run(stage) { pcm in opus.0.encode(pcm).flatMap { opus.1.decode($0[...]) }.map(Array.init) ?? [] }
            if kind == 0 {
                let opusOff = (try! OpusEncoder(channels: 1), try! OpusDecoder(channels: 1))
                let off = s.run(nil) { pcm in opusOff.0.encode(pcm).flatMap { opusOff.1.decode($0[...]) }.map(Array.init) ?? [] }
                erle.append(r.erleDB); erleOff.append(off.erleDB); dt.append(r.doubleTalkNearChangeDB)
                cpu.append(r.cpuMsMedian * 1000); cpuP90.append(r.cpuMsP90 * 1000)
            }
            let t = r.reconvergedAfter.map { $0 * 1000 }
            if kind == 0 { jumpsSteady += Int(r.figures?.bulkDelayJumps ?? 0) } else { jumpsOnJump += Int(r.figures?.bulkDelayJumps ?? 0) }
            switch (kind, b > a) {
            case (0, _): if let t { reconvResponse.append(t) } else { neverResponse += 1 }
            case (_, true): if let t { reconvJumpUp.append(t) } else { neverUp += 1 }
            default: if let t { reconvJumpDown.append(t) } else { neverDown += 1 }
            }
            if verbose {
                print("room \(i): A \(Int(a)) ms, B \(Int(b)) ms: ERLE \(fmt(r.erleDB)) dB, double talk \(fmt(r.doubleTalkNearChangeDB)) dB, "
                      + "after the change (s:dB) \(r.afterChange.map { "\(fmt($0.0, 2)):\(Int($0.1))" }.joined(separator: " "))")
            }
        }
    }
    func never(_ n: Int) -> String { n > 0 ? "  (not within 6 s in \(n))" : "" }
    print("ERLE, far-end single talk 2–8 s       \(spread(erle, "dB"))   (stage off: \(spread(erleOff, "dB")))")
    print("near-end level change in double talk  \(spread(dt, "dB"))")
    print("echo path change → ERLE ≥ 20 dB after:")
    print("  response changed, same delay        \(spread(reconvResponse, "ms"))\(never(neverResponse))")
    print("  bulk delay jumped up 40–65 ms       \(spread(reconvJumpUp, "ms"))\(never(neverUp))")
    print("  bulk delay jumped down 65–70 ms     \(spread(reconvJumpDown, "ms"))\(never(neverDown))")
    if tracker {
        print("bulk delay jumps the stage re-aligned to: \(jumpsOnJump) in the \(runs) runs with a jump, \(jumpsSteady) in the \(runs) without")
    }
    print("CPU per 10 ms frame (thread time)     \(spread(cpu, "µs"))   p90 \(spread(cpuP90, "µs"))")
    print("  = \(fmt((cpu.sorted()[cpu.count / 2]) / 10_000 * 100, 2)) % of one core (median)")
    print("delay added: none buffered (frames are processed in place as captured); only the processing time above")
    print()
}

/// `videophone-bench --aec-check DB`: a quick proof that the canceller this binary was
/// built against cancels echo at all (make aarch64-smoke runs it as arm64 code against
/// webrtc-audio-processing 1.x): one room (80 ms, 6 dB down), the scenario's first 8 s of
/// far-end single talk, no Opus. True when ERLE over 2–8 s reaches `minimumERLE`.
func runEchoCheck(minimumERLE: Double) -> Bool {
    guard var s = try? EchoScenario.withSpeech() else {
        print("aec-check: espeak-ng missing (toolchain/install-test-deps.sh installs it)")
        return false
    }
    s.roomA = RoomResponse(delayMs: 80, attenuationDB: 6, seed: 3)
    s.seconds = 8
    let stage: AudioProcessor
    do { stage = try AudioProcessor(settings: .speakerphone) } catch {
        print("aec-check: \(AudioProcessor.library) failed to start: \(error)")
        return false
    }
    let off = s.run(nil) { $0 }
    let r = s.run(stage) { $0 }
    let ok = r.erleDB >= minimumERLE
    print("aec-check: \(AudioProcessor.library): ERLE 2–8 s \(fmt(r.erleDB)) dB (stage off \(fmt(off.erleDB)) dB, bound \(fmt(minimumERLE)) dB), "
          + "CPU \(fmt(r.cpuMsMedian * 1000, 0)) µs per 10 ms frame: \(ok ? "ok" : "FAILED")")
    return ok
}
