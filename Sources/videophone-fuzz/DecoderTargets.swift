import Codecs
import Display

/// The received-video path after frame assembly: the input is a sequence of access units
/// (each a 2-byte big-endian length, then that many bytes of Annex B), fed in order to the
/// libavcodec decoder the way the decode thread feeds it, each picture drawn onto a screen.
/// Never traps; a picture stays within the decoder's pixel budget and its buffer matches
/// its size.
func fuzzH264Decoder(_ data: [UInt8]) {
    guard let decoder = try? AVCodecH264Decoder() else { require(false, "decoder: libavcodec did not open"); return }
    var picture = I420Picture()
    var fb = Framebuffer(width: 64, height: 36)
    var scaler = PictureScaler()
    var i = 0
    var units = 0
    while i + 2 <= data.count, units < 16 {
        let n = min(Int(data[i]) << 8 | Int(data[i + 1]), data.count - i - 2)
        let unit = data[(i + 2)..<(i + 2 + n)]
        i += 2 + n
        units += 1
        let result = Array(unit).withUnsafeBytes { decoder.decode($0, into: &picture) }
        if case .picture = result {
            require(picture.width > 0 && picture.height > 0, "decoder: a picture with no size")
            require(picture.width * picture.height <= AVCodecH264Decoder.maxPixels, "decoder: \(picture.width)x\(picture.height) over the pixel budget")
            require(picture.bytes.count == I420Picture.size(picture.width, picture.height), "decoder: buffer does not match the picture's size")
            let placed = scaler.draw(picture, into: &fb, area: fb.bounds)
            require(placed.clipped(to: fb.bounds) == placed, "scaler: the picture went outside the screen")
        }
    }
}

/// Seeds: the project's own x264 output (an IDR and P-frames, a resolution change, a
/// truncated frame), framed as the target reads them.
func decoderSeeds() -> [(String, [UInt8])] {
    func frames(_ w: Int, _ h: Int, _ count: Int) -> [[UInt8]] {
        guard let enc = try? X264Encoder(settings: H264EncoderSettings(width: w, height: h, fps: 30, bitrateKbps: 300)) else { return [] }
        var out: [[UInt8]] = []
        var pic = [UInt8](repeating: 0, count: w * h * 3 / 2)
        var n = 0
        while out.count < count, n < count + 30 {
            for y in 0..<h { for x in 0..<w { pic[y * w + x] = UInt8(truncatingIfNeeded: x * 4 + y + n * 8) } }
            for k in (w * h)..<pic.count { pic[k] = UInt8(truncatingIfNeeded: 100 + k % 7 + n) }
            if let f = pic.withUnsafeBytes({ enc.encode(i420: $0, forceKeyframe: n == 0) }) { out.append(f.data) }
            n += 1
        }
        return out
    }
    func framed(_ units: [[UInt8]]) -> [UInt8] {
        units.flatMap { u -> [UInt8] in let n = min(u.count, 0xFFFF); return [UInt8(n >> 8), UInt8(n & 0xFF)] + u.prefix(n) }
    }
    let small = frames(64, 48, 3), other = frames(96, 64, 2)
    var seeds: [(String, [UInt8])] = []
    if !small.isEmpty { seeds.append(("idr-then-p", framed(small))) }
    if !small.isEmpty, !other.isEmpty { seeds.append(("size-change", framed([small[0], small[1], other[0], other[1]]))) }
    if let idr = small.first { seeds.append(("truncated-idr", framed([Array(idr.prefix(idr.count / 2)), idr]))) }
    if small.count > 1 { seeds.append(("p-without-idr", framed(Array(small[1...])))) }
    return seeds
}
