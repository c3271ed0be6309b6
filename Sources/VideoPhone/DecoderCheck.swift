import Codecs
import MediaDevicesLinux
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// `videophoned --check-decoder [PATH[:FOURCC]]`: decodes a moving test picture on a V4L2
/// mem2mem decoder and compares what comes out with what went in. H.264 input comes from
/// x264; FWHT input (the emulated board's vicodec) from the board's FWHT mem2mem encoder.
public enum DecoderCheck {
    /// Returns the report and whether the decoder passed: every frame came back at the size
    /// sent and close to the original (luma PSNR ≥ 25 dB).
    public static func run(spec: String?, frames: Int = 30, width: Int = 640, height: Int = 480) -> (String, Bool) {
        var path = spec
        var format = V4L2M2MEncoder.h264
        if let s = spec, let colon = s.lastIndex(of: ":") {
            path = String(s[..<colon])
            guard let f = fourcc(String(s[s.index(after: colon)...])) else { return ("unknown format in '\(s)' (four letters, e.g. H264)", false) }
            format = f
        }
        if path == nil || path == "" {
            guard let found = V4L2M2MDecoder.find(codedFormat: format) else { return ("no mem2mem decoder from \(fourcc(format)) to I420/NV12 on this board", false) }
            path = found.path
        }
        let decoder: V4L2M2MDecoder
        do { decoder = try V4L2M2MDecoder(path: path!, codedFormat: format) } catch { return ("\(error)", false) }
        let settings = H264EncoderSettings(width: width, height: height, fps: 30, bitrateKbps: 2000)
        let encoder: any VideoEncoder
        do {
            if format == V4L2M2MEncoder.h264 {
                encoder = try X264Encoder(settings: settings)
            } else {
                guard let e = V4L2M2MEncoder.find(codedFormat: format) else { return ("no \(fourcc(format)) encoder to make test input with", false) }
                encoder = try V4L2M2MEncoder(path: e.path, settings: settings, codedFormat: format)
            }
        } catch { return ("test input: \(error)", false) }
        var lines = ["decoder: \(decoder.name), \(fourcc(format)) \(width)x\(height), input from \(encoder.name)"]
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: width * height * 3 / 2, alignment: 64)
        defer { frame.deallocate() }
        var picture = I420Picture()
        var times: [Double] = [], psnrs: [Double] = []
        var sent = 0, wrongSize = 0, failures: [String] = []
        for n in 0..<frames {
            for y in 0..<height {
                for x in 0..<width {
                    let inSquare = (x - n * 8 + 640) % width < 64 && y >= height / 3 && y < height / 3 + 64
                    frame[y * width + x] = inSquare ? 235 : UInt8(truncatingIfNeeded: (x + y) / 8 + 16)
                }
            }
            for i in (width * height)..<frame.count { frame[i] = 128 }
            guard let coded = encoder.encode(i420: UnsafeRawBufferPointer(frame), forceKeyframe: n == 0) else { continue }
            sent += 1
            let t0 = Instant.now()
            let result = coded.data.withUnsafeBytes { decoder.decode($0, into: &picture) }
            switch result {
            case .picture:
                times.append((Instant.now() - t0).milliseconds)
                guard picture.width == width, picture.height == height else { wrongSize += 1; continue }
                var se = 0.0
                for i in stride(from: 0, to: width * height, by: 3) { let d = Double(picture.bytes[i]) - Double(frame[i]); se += d * d }
                let mse = se / Double((width * height + 2) / 3)
                psnrs.append(mse == 0 ? 99 : 10 * log10(255 * 255 / mse))
            case .noPicture: break
            case .failed(let why): failures.append(why)
            }
        }
        let median = times.sorted().dropFirst(times.count / 2).first ?? 0
        lines.append("pictures out: \(times.count)/\(sent), decode median \(fmt(median, 2)) ms, luma PSNR min \(fmt(psnrs.min() ?? 0, 1)) dB"
                     + (wrongSize > 0 ? ", \(wrongSize) at the wrong size" : "") + (failures.isEmpty ? "" : ", failures: \(Set(failures).sorted().joined(separator: "; "))"))
        // Stateful decoders may hold a frame or two back; all but two must be out.
        let ok = sent > 0 && times.count >= sent - 2 && wrongSize == 0 && (psnrs.min() ?? 0) >= 25
        return (lines.joined(separator: "\n"), ok)
    }
}
