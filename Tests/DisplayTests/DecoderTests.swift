import Codecs
import MediaDevices
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Encodes the test pattern with the project's own x264 encoder.
func encodedPattern(width: Int, height: Int, frames: Int, keyframeEvery: Int = 1000) throws -> [(EncodedVideoFrame, [UInt8])] {
    let cam = TestPatternCamera(width: width, height: height)
    let enc = try X264Encoder(settings: H264EncoderSettings(width: width, height: height, fps: 30, bitrateKbps: 1500, keyframeInterval: keyframeEvery))
    var out: [(EncodedVideoFrame, [UInt8])] = []
    var i = 0
    while out.count < frames {
        let buf = cam.draw()
        if let f = enc.encode(i420: UnsafeRawBufferPointer(buf), forceKeyframe: i == 0) { out.append((f, Array(buf))) }
        i += 1
    }
    return out
}

func psnr(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Double {
    var se = 0.0
    for (x, y) in zip(a, b) { let d = Double(x) - Double(y); se += d * d }
    let mse = se / Double(a.count)
    return mse == 0 ? 99 : 10 * log10(255 * 255 / mse)
}

func decode(_ d: AVCodecH264Decoder, _ data: [UInt8], _ pic: inout I420Picture) -> DecodeResult {
    data.withUnsafeBytes { d.decode($0, into: &pic) }
}

@Suite struct DecoderTests {
    @Test func decodesTheEncodersFramesOneInOneOut() throws {
        let frames = try encodedPattern(width: 320, height: 240, frames: 12)
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        for (i, (f, source)) in frames.enumerated() {
            // Low delay: every access unit gives its picture at once, none held back.
            #expect(decode(dec, f.data, &pic) == .picture(concealed: false), "frame \(i)")
            #expect(pic.width == 320 && pic.height == 240)
            let luma = 320 * 240
            #expect(psnr(pic.bytes[0..<luma], source[0..<luma]) > 30, "frame \(i) luma differs from what was encoded")
        }
    }

    @Test func missingReferenceGivesNoPictureUntilTheNextKeyframe() throws {
        let frames = try encodedPattern(width: 320, height: 240, frames: 8)
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        // The IDR was lost: the P-frames reference nothing.
        var shown = 0
        for (f, _) in frames[1...] { if case .picture(concealed: false) = decode(dec, f.data, &pic) { shown += 1 } }
        #expect(shown == 0)
        #expect(decode(dec, frames[0].0.data, &pic) == .picture(concealed: false))
    }

    @Test func corruptAndTruncatedInputRecoversAtTheNextKeyframe() throws {
        let frames = try encodedPattern(width: 320, height: 240, frames: 6)
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        #expect(decode(dec, frames[0].0.data, &pic) == .picture(concealed: false))
        // Truncated P-frame, then garbage after a start code, then an empty one.
        let p = frames[1].0.data
        let truncated = Array(p.prefix(p.count / 3))
        // Must not trap; the slice is cut short, so no clean picture can come out of it.
        #expect(decode(dec, truncated, &pic) != .picture(concealed: false))
        var rng = SystemRandomNumberGenerator()
        let garbage: [UInt8] = [0, 0, 0, 1] + (0..<2000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        _ = decode(dec, garbage, &pic)
        _ = decode(dec, [], &pic)
        // Flipped bits in the middle of a slice.
        var flipped = frames[2].0.data
        for i in stride(from: 40, to: flipped.count, by: 17) { flipped[i] ^= 0x5A }
        _ = decode(dec, flipped, &pic)
        // A keyframe brings it back.
        let key = try encodedPattern(width: 320, height: 240, frames: 1)[0]
        #expect(decode(dec, key.0.data, &pic) == .picture(concealed: false))
        #expect(psnr(pic.bytes[0..<320 * 240], key.1[0..<320 * 240]) > 30)
    }

    @Test func resolutionChangeMidStream() throws {
        let small = try encodedPattern(width: 320, height: 240, frames: 3)
        let big = try encodedPattern(width: 640, height: 360, frames: 3)
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        for (f, _) in small { _ = decode(dec, f.data, &pic) }
        #expect(pic.width == 320 && pic.height == 240)
        for (f, _) in big { #expect(decode(dec, f.data, &pic) == .picture(concealed: false)) }
        #expect(pic.width == 640 && pic.height == 360)
        #expect(pic.bytes.count == I420Picture.size(640, 360))
    }

    /// NAL units of an Annex B access unit (start codes dropped).
    func nalUnits(_ au: [UInt8]) -> [[UInt8]] {
        var starts: [Int] = []
        var i = 0
        while i + 3 <= au.count {
            if au[i] == 0, au[i + 1] == 0, au[i + 2] == 1 { starts.append(i + 3); i += 3 } else { i += 1 }
        }
        return starts.enumerated().map { k, s in
            var end = k + 1 < starts.count ? starts[k + 1] - 3 : au.count
            while end > s, au[end - 1] == 0 { end -= 1 }
            return Array(au[s..<end])
        }
    }

    @Test func parameterSetsThatLieAboutTheSizeDoNotTrapAndAKeyframeRecovers() throws {
        let small = try encodedPattern(width: 320, height: 240, frames: 2)
        let big = try encodedPattern(width: 640, height: 360, frames: 1)
        let smallNALs = nalUnits(small[0].0.data), bigNALs = nalUnits(big[0].0.data)
        guard let bigSPS = bigNALs.first(where: { $0[0] & 0x1F == 7 }) else { Issue.record("no SPS in x264's IDR"); return }
        // The SPS says 640x360; the PPS and slices that follow were coded for 320x240.
        var lying: [UInt8] = []
        for n in smallNALs { lying += [0, 0, 0, 1] + (n[0] & 0x1F == 7 ? bigSPS : n) }
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        let r = decode(dec, lying, &pic)
        if case .picture(let concealed) = r {
            // Whatever came out has the size the SPS claimed, within the budget, and is marked.
            #expect(pic.width == 640 && pic.height == 360)
            #expect(concealed, "a picture from mismatched slices was not flagged")
        }
        _ = decode(dec, small[1].0.data, &pic)
        // The next honest keyframe gives a clean picture at its own size.
        let again = try encodedPattern(width: 320, height: 240, frames: 1)[0]
        #expect(decode(dec, again.0.data, &pic) == .picture(concealed: false))
        #expect(pic.width == 320 && pic.height == 240)
    }

    @Test func oversizedPictureIsRefused() throws {
        // 2560x1440 exceeds the decoder's pixel budget: refused, no picture, no trap.
        let huge = try encodedPattern(width: 2560, height: 1440, frames: 1)
        let dec = try AVCodecH264Decoder()
        var pic = I420Picture()
        let r = decode(dec, huge[0].0.data, &pic)
        if case .picture = r { Issue.record("a picture over the pixel budget was decoded") }
        #expect(pic.width * pic.height <= AVCodecH264Decoder.maxPixels)
    }
}
