import AudioProcessing
import MediaDevices
import Testing

/// An echo path change with a jump of the bulk delay (a sound device re-buffered without
/// an xrun the stage could see), on the echo scenario with the bench's rooms: the stage's
/// own tracker finds the jump, re-aligns and holds echo down meanwhile, so the canceller
/// is back within the issue's second, up or down.
@Suite struct BulkDelayTests {
    static let scenario = Result { try EchoScenario.withSpeech() }

    @Test(arguments: [(30.0, 80.0, 0), (55.0, 100.0, 1), (80.0, 120.0, 2), (100.0, 30.0, 3), (120.0, 55.0, 4)])
    func aBulkDelayJumpIsFollowedWithinASecond(a: Double, b: Double, room: Int) throws {
        var s = try Self.scenario.get()
        s.roomA = RoomResponse(delayMs: a, attenuationDB: 3 + Double(room * 7 % 8), seed: UInt64(3 + room))
        s.roomB = RoomResponse(delayMs: b, attenuationDB: 3 + Double((room + 3) * 5 % 8), seed: UInt64(100 + room))
        let r = s.run(try AudioProcessor(settings: .speakerphone), encoder: OpusLoop().callAsFunction)
        print("bulk \(Int(a))→\(Int(b)) ms: ERLE \(r.erleDB) dB, double talk \(r.doubleTalkNearChangeDB) dB, reconverged after \(r.reconvergedAfter.map { "\($0) s" } ?? "never"); "
              + "windows \(r.afterChange.map { "\($0.0):\(Int($0.1))" }.joined(separator: " ")); tracker \(r.figures?.bulkDelayMs ?? -1) ms, "
              + "jumps \(r.figures?.bulkDelayJumps ?? 0), shift \(r.figures?.referenceShiftMs ?? -1) ms")
        // The tracker does no harm where the room is steady...
        #expect(r.erleDB >= 25)
        #expect(r.doubleTalkNearChangeDB >= -6)
        // ...and finds the one jump, to its 2 ms blocks.
        #expect(r.figures?.bulkDelayJumps == 1)
        #expect(abs((r.figures?.bulkDelayMs ?? 0) - b) <= 4)
        #expect((r.reconvergedAfter ?? 99) <= 1)
        // Up, the reference is held back by the jump; down, there is nothing to undo.
        #expect(abs((r.figures?.referenceShiftMs ?? -99) - max(0, b - a)) <= 4)
    }
}
