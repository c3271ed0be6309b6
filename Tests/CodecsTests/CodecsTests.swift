@testable import MediaDevices
import NetworkCore
import RTP
import Testing
@testable import Codecs

@Suite struct X264Tests {
    func frames(_ count: Int, width: Int = 320, height: Int = 240) -> [[UInt8]] {
        (0..<count).map { n in
            (0..<(width * height * 3 / 2)).map { UInt8(truncatingIfNeeded: ($0 % width) + n * 3) }
        }
    }

    @Test func constrainedBaselineWithSPSAndPPSBeforeEveryIDRAndNoBFrames() throws {
        let enc = try X264Encoder(settings: H264EncoderSettings(width: 320, height: 240, fps: 30, bitrateKbps: 500, keyframeInterval: 10, profileLevelID: "42e01f"))
        var keyframes = 0
        for (i, f) in frames(25).enumerated() {
            let out = try #require(f.withUnsafeBytes { enc.encode(i420: $0, forceKeyframe: i == 0) })
            let nals = AnnexB.nalUnitRanges(out.data).map { out.data[$0.lowerBound] & 0x1F }
            if nals.contains(H264NALType.idr) {
                keyframes += 1
                #expect(out.isKeyframe)
                #expect(Array(nals.prefix(2)) == [H264NALType.sps, H264NALType.pps], "frame \(i): \(nals)")
                let sps = AnnexB.nalUnitRanges(out.data).first!
                #expect(out.data[sps.lowerBound + 1] == 0x42)  // profile_idc Baseline
                #expect(out.data[sps.lowerBound + 2] & 0x40 != 0)  // constraint_set1: Constrained Baseline
                #expect(out.data[sps.lowerBound + 3] == 0x1f)  // level 3.1 as negotiated
            } else {
                #expect(!nals.contains(H264NALType.sps))
            }
            // zerolatency, no B-frames: every input gives an output at once.
            #expect(!out.data.isEmpty)
        }
        #expect(keyframes >= 3)  // first frame plus every 10 frames
    }

    @Test func forcedKeyframeOnRequest() throws {
        let enc = try X264Encoder(settings: H264EncoderSettings(width: 320, height: 240, fps: 30, bitrateKbps: 500))
        let f = frames(6)
        for i in 0..<5 { _ = f[i].withUnsafeBytes { enc.encode(i420: $0, forceKeyframe: i == 0) } }
        let out = try #require(f[5].withUnsafeBytes { enc.encode(i420: $0, forceKeyframe: true) })
        #expect(out.isKeyframe)
    }

    @Test func spsIsRewrittenToTheNegotiatedProfile() {
        var data: [UInt8] = [0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1F, 0xAA, 0, 0, 1, 0x68, 0xCE]
        X264Encoder.patchSPS(&data, profile: (0x42, 0x00, 0x1F))
        #expect(Array(data[5...7]) == [0x42, 0x40, 0x1F])
        X264Encoder.patchSPS(&data, profile: (0x4D, 0x00, 0x28))
        #expect(Array(data[5...7]) == [0x4D, 0x00, 0x28])
    }
}

@Suite struct OpusTests {
    @Test func twentyMillisecondsEncodeAndDecodeBack() throws {
        let enc = try OpusEncoder(channels: 1)
        let dec = try OpusDecoder(channels: 1)
        let tone = (0..<960).map { Int16(8000 * sin(Double($0) * 2 * .pi * 440 / 48000)) }
        var last: ArraySlice<Int16> = []
        for _ in 0..<5 {
            let packet = try #require(enc.encode(tone))
            #expect(packet.count > 10 && packet.count < 400)
            last = try #require(dec.decode(packet[...]))
            #expect(last.count == 960)
        }
        let rms = (last.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(last.count)).squareRoot()
        #expect(rms > 2000)  // the tone survived
        // Loss concealment produces a frame too.
        #expect(dec.decode(nil)?.count == 960)
        // A corrupt packet is reported, not played.
        #expect(dec.decode([0xFF, 0xFF, 0xFF][...]) == nil)
    }
}

@Suite struct SimulatedDeviceTests {
    @Test func testPatternMovesBetweenFrames() {
        let cam = TestPatternCamera(width: 64, height: 48, fps: 30)
        let a = Array(cam.draw())
        let b = Array(cam.draw())
        #expect(a.count == 64 * 48 * 3 / 2)
        #expect(a != b)
    }

    @Test func cameraDeliversFramesUntilStopped() async throws {
        let cam = TestPatternCamera(width: 64, height: 48, fps: 50)
        let count = Locked(0)
        try cam.start { _ in count.withLock { $0 += 1 } }
        for _ in 0..<200 where count.current < 3 { try await Task.sleep(for: .milliseconds(10)) }
        cam.stop()
        let atStop = count.current
        #expect(atStop >= 3)
        try await Task.sleep(for: .milliseconds(100))
        #expect(count.current == atStop)
    }
}

import Foundation
