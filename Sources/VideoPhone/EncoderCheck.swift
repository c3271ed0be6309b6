import Codecs
import MediaDevicesLinux
import NetworkCore

/// `videophoned --check-encoder [PATH[:FOURCC]]`: pushes a moving test picture through a
/// V4L2 mem2mem encoder and reports what came out, so an installer (or the emulated
/// board's test, with vicodec's FWHT encoder) can see the hardware path work.
public enum EncoderCheck {
    /// Returns the report and whether the encoder passed: every frame came back, the first
    /// and the forced ones as keyframes.
    public static func run(spec: String?, frames: Int = 60, width: Int = 640, height: Int = 480) -> (String, Bool) {
        var path = spec
        var format = V4L2M2MEncoder.h264
        if let s = spec, let colon = s.lastIndex(of: ":") {
            path = String(s[..<colon])
            guard let f = fourcc(String(s[s.index(after: colon)...])) else { return ("unknown format in '\(s)' (four letters, e.g. H264)", false) }
            format = f
        }
        if path == nil || path == "" {
            guard let found = V4L2M2MEncoder.find(codedFormat: format) else { return ("no mem2mem encoder from I420 to \(fourcc(format)) on this board", false) }
            path = found.path
        }
        let settings = H264EncoderSettings(width: width, height: height, fps: 30, bitrateKbps: 1000)
        let encoder: V4L2M2MEncoder
        do { encoder = try V4L2M2MEncoder(path: path!, settings: settings, codedFormat: format) } catch {
            return ("\(error)", false)
        }
        var lines = ["encoder: \(encoder.name), \(fourcc(format)) \(width)x\(height)"]
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: width * height * 3 / 2, alignment: 64)
        defer { frame.deallocate() }
        var sizes: [Int] = [], times: [Double] = [], keyframes: [Int] = []
        var firstBytes: [UInt8] = []
        for n in 0..<frames {
            // A still ramp with a bright square moving across it: P-frames carry the change.
            for y in 0..<height {
                for x in 0..<width {
                    let inSquare = (x - n * 8 + 640) % width < 64 && y >= height / 3 && y < height / 3 + 64
                    frame[y * width + x] = inSquare ? 235 : UInt8(truncatingIfNeeded: (x + y) / 8)
                }
            }
            for i in (width * height)..<frame.count { frame[i] = 128 }
            let t0 = Instant.now()
            guard let out = encoder.encode(i420: UnsafeRawBufferPointer(frame), forceKeyframe: n == 0 || n == 30) else { continue }
            times.append((Instant.now() - t0).milliseconds)
            sizes.append(out.data.count)
            if out.isKeyframe { keyframes.append(n) }
            if firstBytes.isEmpty { firstBytes = Array(out.data.prefix(8)) }
        }
        let median = times.sorted().dropFirst(times.count / 2).first ?? 0
        lines.append("frames out: \(sizes.count)/\(frames), bytes median \(sizes.sorted().dropFirst(sizes.count / 2).first ?? 0), "
                     + "encode median \(fmt(median, 2)) ms, \(keyframes.count) keyframes (at \(keyframes.prefix(6).map(String.init).joined(separator: ","))\(keyframes.count > 6 ? ",..." : ""))")
        lines.append("first bytes: \(firstBytes.map { String($0, radix: 16) }.joined(separator: " "))")
        if !encoder.refusedControls.isEmpty { lines.append("refused controls: \(Set(encoder.refusedControls).sorted().joined(separator: ", "))") }
        // Every frame must come back and start with a keyframe; an H.264 encoder must also
        // honour the forced keyframe (PLI). Test codecs (vicodec's FWHT) keep their own GOP.
        let ok = sizes.count == frames && keyframes.contains(0) && (format != V4L2M2MEncoder.h264 || keyframes.contains(30))
        return (lines.joined(separator: "\n"), ok)
    }
}

extension EncoderCheck {
    /// The encoder a call would use with config `c` (nil: no config could be read), in
    /// words for `--version`.
    public static func inUse(_ c: DeviceConfig?) -> String {
        guard let c else { return "x264, or the board's V4L2 H.264 encoder when one is found (config not readable)" }
        if c.videoEncoder == "x264" { return "x264 (video.encoder = \"x264\")" }
        if let path = c.videoEncoderDevice { return "V4L2 mem2mem \(path) (video.encoder_device)" }
        if let f = V4L2M2MEncoder.find() { return "V4L2 mem2mem \(f.path) (\(f.card))" }
        return c.videoEncoder == "v4l2" ? "none: video.encoder = \"v4l2\" and no V4L2 H.264 encoder found" : "x264 (no V4L2 H.264 encoder found)"
    }
}
