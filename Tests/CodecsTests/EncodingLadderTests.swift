import Testing
@testable import Codecs

@Suite struct EncodingLadderTests {
    @Test func rungsFollowTheTargetDownAndUpWithHysteresis() {
        var l = EncodingLadder(width: 1280, height: 720, fps: 30)
        #expect(l.rungs.map { "\($0.width)x\($0.height)@\($0.fps)" } == ["1280x720@30", "960x540@30", "640x360@30", "640x360@15"])
        #expect(l.update(targetKbps: 2000, seconds: 0) == nil)
        // 600 kbit/s: 720p gets 0.022 bit per pixel, 540p 0.039: 540p, once it lasts 1.5 s.
        #expect(l.update(targetKbps: 600, seconds: 1) == nil)
        #expect(l.update(targetKbps: 600, seconds: 2) == nil)
        #expect(l.update(targetKbps: 600, seconds: 2.6)?.height == 540)
        // A dip shorter than 1.5 s changes nothing.
        #expect(l.update(targetKbps: 300, seconds: 5) == nil)
        #expect(l.update(targetKbps: 700, seconds: 6) == nil)
        #expect(l.update(targetKbps: 300, seconds: 6.5) == nil)
        // 300 kbit/s for long: 540p would get 0.019, 360p30 0.043: 360p at full rate.
        #expect(l.update(targetKbps: 300, seconds: 7) == nil)
        #expect(l.update(targetKbps: 300, seconds: 8.1)?.height == 360)
        #expect(l.current.fps == 30)
        // 150 kbit/s keeps 30 frames; 60 kbit/s (0.0087 bit per pixel) halves them.
        #expect(l.update(targetKbps: 150, seconds: 11) == nil)
        #expect(l.update(targetKbps: 150, seconds: 13) == nil)
        #expect(l.update(targetKbps: 60, seconds: 14) == nil)
        #expect(l.update(targetKbps: 60, seconds: 15.6)?.fps == 15)
        // Back up only when the higher rung gets 0.036 bit per pixel, held for 4 s.
        #expect(l.update(targetKbps: 900, seconds: 16) == nil)
        #expect(l.update(targetKbps: 900, seconds: 19) == nil)
        #expect(l.update(targetKbps: 900, seconds: 20.1)?.height == 540)
        #expect(l.update(targetKbps: 1000, seconds: 21) == nil)
        #expect(l.update(targetKbps: 1000, seconds: 25.2)?.height == 720)
    }

    /// A collapse of the target (a 2 Mbit/s call behind a 300 kbit/s link) changes the
    /// picture at once, before a keyframe at the old size clogs the link.
    @Test func aCollapseGoesDownAtOnce() {
        var l = EncodingLadder(width: 1280, height: 720, fps: 30)
        #expect(l.update(targetKbps: 250, seconds: 10)?.height == 360)
    }

    @Test func smallCamerasHaveNoSmallerRungs() {
        let l = EncodingLadder(width: 320, height: 240, fps: 15)
        #expect(l.rungs.count == 1)
    }

    @Test func scalerAveragesAndKeepsTheLayout() {
        // 4x4 I420: Y rows of 0,100,200,... ; U = 50, V = 150.
        var src = [UInt8](repeating: 0, count: 4 * 4 * 3 / 2)
        for y in 0..<4 { for x in 0..<4 { src[y * 4 + x] = UInt8(y < 2 ? (x < 2 ? 10 : 30) : (x < 2 ? 50 : 70)) } }
        for i in 16..<20 { src[i] = 50 }
        for i in 20..<24 { src[i] = 150 }
        var s = I420Scaler()
        src.withUnsafeBytes { s.scale($0, width: 4, height: 4, toWidth: 2, toHeight: 2) }
        #expect(Array(s.output[0..<4]) == [10, 30, 50, 70])
        #expect(s.output[4] == 50)
        #expect(s.output[5] == 150)
    }
}
