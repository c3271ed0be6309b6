import AudioProcessing
import Foundation
import NetworkCore
import Testing

/// Two real daemons in a call over loopback, real Opus both ways. Device a's simulated
/// microphone hears a near-end talker plus its own speaker through a 60 ms room
/// (`audio.source = "talker"`); b's talks (espeak-ng speech) and hears no echo. What b
/// receives is measured from its W3C totalAudioEnergy/totalSamplesDuration.
@Suite(.serialized) struct EchoCallTests {
    /// Mean power b received over `seconds`, after `settle` seconds of call; dBFS.
    static func receivedPower(aTalker: String, aProcessing: Bool, bTalker: String, dir: String,
                              settle: Double = 3, seconds: Double = 4) throws -> Double {
        let h = try DaemonHarness()
        let processing = aProcessing ? "" : "echo_cancellation = false\nnoise_suppression = false\ngain_control = false\n"
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")],
                    extra: "[video]\nsource = \"none\"\n[audio]\nsource = \"talker\"\ntalker_file = \"\(aTalker)\"\necho_delay_ms = 60\necho_attenuation_db = 6\n" + processing)
        try h.start("b", peers: [],
                    extra: "[video]\nsource = \"none\"\n[audio]\nsource = \"talker\"\ntalker_file = \"\(bTalker)\"\necho_attenuation_db = 80\necho_cancellation = false\nnoise_suppression = false\ngain_control = false\n")
        #expect(try h.control("a", "call").hasPrefix("ok"))
        let flowing = h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "audio", "packetsDecoded") > 10 } ?? false }
        #expect(flowing != nil, "no audio at b; logs:\n\(h.log("a"))\n\(h.log("b"))")
        h.pause(settle)
        let s0 = try h.status("b")
        h.pause(seconds)
        let s1 = try h.status("b")
        let a = try h.status("a")
        let ap = a["audioProcessing"] as? [String: Any] ?? [:]
        print("echo-call: a processing \(aProcessing) talker \(aTalker.split(separator: "/").last!): a.audioProcessing \(ap)")
        let energy = stat(s1, type: "inbound-rtp", kind: "audio", "totalAudioEnergy") - stat(s0, type: "inbound-rtp", kind: "audio", "totalAudioEnergy")
        let duration = stat(s1, type: "inbound-rtp", kind: "audio", "totalSamplesDuration") - stat(s0, type: "inbound-rtp", kind: "audio", "totalSamplesDuration")
        if DaemonHarness.timeScale == 1 { #expect(duration > seconds * 0.8) }
        _ = try? h.control("a", "hangup")
        return 10 * log10(max(energy / max(duration, 1e-3), 1e-12))
    }

    static func speechFile(_ dir: String, _ name: String, _ text: String, voice: String) throws -> String {
        let path = "\(dir)/\(name).wav"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["espeak-ng", "-v", voice, "-s", "165", "-w", path, text]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "espeak-ng failed (toolchain/install-test-deps.sh installs it)")
        return path
    }

    /// A WAV of one second of silence: a talker who says nothing.
    static func silenceFile(_ dir: String) throws -> String {
        let path = "\(dir)/silence.wav"
        // Appended piece by piece: Swift 6.2 cannot type-check the one-expression sum in time.
        var b: [UInt8] = Array("RIFF".utf8)
        b += le32(36 + 96_000)
        b += Array("WAVEfmt ".utf8)
        b += le32(16)
        b += [1, 0, 1, 0]
        b += le32(48_000)
        b += le32(96_000)
        b += [2, 0, 16, 0]
        b += Array("data".utf8) + le32(96_000) + [UInt8](repeating: 0, count: 96_000)
        try Data(b).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> ($0 * 8)) & 0xff) } }

    @Test func theFarEndHearsNoEchoAndTheNearEndTalkerKeepsHisLevel() throws {
        let dir = NSTemporaryDirectory() + "videophone-echo-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let far = try Self.speechFile(dir, "far", TestSpeech.farEnd, voice: "en-us")
        // About four seconds, looped: a 4 s window holds all of it whatever the phase.
        let near = try Self.speechFile(dir, "near", "Hello, yes, I can hear you quite well now, the weather is lovely.", voice: "en-gb+f3")
        let silence = try Self.silenceFile(dir)
        // An instrumented (sanitizer) build on a loaded machine does not keep real time, and
        // this is a measurement of real-time audio: there, one double-talk call with the
        // stage on runs for the sanitizer's sake and the figures are not judged.
        guard DaemonHarness.timeScale == 1 else {
            _ = try Self.receivedPower(aTalker: near, aProcessing: true, bTalker: far, dir: dir)
            return
        }

        // Far-end single talk: b talks, a's microphone hears only the echo.
        let echoOff = try Self.receivedPower(aTalker: silence, aProcessing: false, bTalker: far, dir: dir)
        let echoOn = try Self.receivedPower(aTalker: silence, aProcessing: true, bTalker: far, dir: dir)
        // Near-end single talk and double talk, stage on.
        let nearAlone = try Self.receivedPower(aTalker: near, aProcessing: true, bTalker: silence, dir: dir)
        let doubleTalk = try Self.receivedPower(aTalker: near, aProcessing: true, bTalker: far, dir: dir)
        print("echo-call: echo received off \(echoOff) dBFS, on \(echoOn) dBFS (ERLE \(echoOff - echoOn) dB); near alone \(nearAlone) dBFS, double talk \(doubleTalk) dBFS")
        #expect(echoOff > -40, "the echo path is missing: \(echoOff) dBFS")
        #expect(echoOff - echoOn >= 25)
        #expect(doubleTalk - nearAlone >= -6)
    }
}
