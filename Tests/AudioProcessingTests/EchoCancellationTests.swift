import AudioProcessing
import Codecs
import Testing

/// Opus at the call's settings, both ways: the figures are on what the peer decodes.
final class OpusLoop: @unchecked Sendable {
    let encoder = try! OpusEncoder(channels: 1)
    let decoder = try! OpusDecoder(channels: 1)
    func callAsFunction(_ pcm: [Int16]) -> [Int16] {
        guard let packet = encoder.encode(pcm), let out = decoder.decode(packet[...]) else { return [] }
        return Array(out)
    }
}

@Suite struct EchoCancellationTests {
    static let scenario = Result { try EchoScenario.withSpeech() }

    @Test func speechIsGenerated() throws {
        let s = try Self.scenario.get()
        #expect(s.far.count > 48_000 * 8)
        #expect(s.near.count > 48_000 * 5)
    }

    @Test func echoCancellationMeetsTheTargets() throws {
        let s = try Self.scenario.get()
        let off = s.run(nil, encoder: OpusLoop().callAsFunction)
        let stage = try AudioProcessor(settings: .speakerphone)
        let on = s.run(stage, encoder: OpusLoop().callAsFunction)
        print("aec: library \(AudioProcessor.library); ERLE off \(off.erleDB) dB, on \(on.erleDB) dB; double-talk near change \(on.doubleTalkNearChangeDB) dB (off \(off.doubleTalkNearChangeDB)); reconverged after \(on.reconvergedAfter.map { "\($0) s" } ?? "never"); windows \(on.afterChange.map { "\($0.0):\(Int($0.1))" }); silence \(on.silenceDBFS) dBFS; cpu \(on.cpuMsMedian) ms/frame; figures \(String(describing: on.figures))")
        // Without the stage the far end gets its echo back nearly whole.
        #expect(off.erleDB < 3)
        #expect(on.erleDB >= 25)
        #expect(on.doubleTalkNearChangeDB >= -6)
        #expect((on.reconvergedAfter ?? 99) <= 1)
        #expect(on.figures?.framesProcessed == UInt64(26 * 100))
        // A steady bulk delay, near-end talk and double talk never look like a jump to the tracker.
        #expect(on.figures?.bulkDelayJumps == 0)
        #expect(abs((on.figures?.bulkDelayMs ?? 0) - 60) <= 4)
    }
}
