import CAVCodec

/// A decoded picture in I420 (planes tightly packed: Y, then U, then V), owned by its
/// holder. Decoders write into one they are given, reusing its storage.
public struct I420Picture: Sendable {
    public private(set) var width: Int
    public private(set) var height: Int
    /// Y (width × height), U and V (each ⌈w/2⌉ × ⌈h/2⌉), tightly packed.
    public var bytes: [UInt8]

    public init(width: Int = 0, height: Int = 0) {
        self.width = width
        self.height = height
        bytes = [UInt8](repeating: 0, count: I420Picture.size(width, height))
    }

    /// A picture over existing bytes (tightly packed I420 of this size).
    public init(width: Int, height: Int, bytes: [UInt8]) {
        precondition(bytes.count >= I420Picture.size(width, height), "I420 bytes too short for \(width)x\(height)")
        self.width = width
        self.height = height
        self.bytes = bytes
    }

    /// Bytes an I420 picture of this size takes.
    public static func size(_ w: Int, _ h: Int) -> Int { w * h + 2 * ((w + 1) / 2) * ((h + 1) / 2) }

    public var chromaWidth: Int { (width + 1) / 2 }
    public var chromaHeight: Int { (height + 1) / 2 }
    public var isEmpty: Bool { width == 0 || height == 0 }

    /// Becomes a copy of `other`, reusing this picture's storage when the size matches (a
    /// screen keeps its last picture without allocating per frame).
    public mutating func copy(from other: I420Picture) {
        resize(width: other.width, height: other.height)
        let n = min(bytes.count, other.bytes.count)
        bytes.withUnsafeMutableBufferPointer { dst in
            other.bytes.withUnsafeBufferPointer { src in dst.baseAddress!.update(from: src.baseAddress!, count: n) }
        }
    }

    /// Becomes a copy of the tightly packed I420 `src` of this size.
    public mutating func copy(from src: UnsafeRawBufferPointer, width: Int, height: Int) {
        resize(width: width, height: height)
        let n = min(bytes.count, src.count)
        bytes.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n) }
    }

    /// Changes the size; keeps the storage when it is big enough (no allocation per frame).
    public mutating func resize(width: Int, height: Int) {
        self.width = width
        self.height = height
        let n = I420Picture.size(width, height)
        if bytes.count != n { bytes = [UInt8](repeating: 0, count: n) }
    }
}

/// What one access unit gave.
public enum DecodeResult: Sendable, Equatable {
    /// A picture was written; `concealed` when the decoder had to patch over missing data
    /// (shown, but the sender should send a keyframe).
    case picture(concealed: Bool)
    /// Nothing came out: the decoder waits for a keyframe (a reference is missing) or the
    /// unit held only parameter sets.
    case noPicture
    /// The input could not be decoded; the reason is for the log.
    case failed(String)
}

/// An H.264 decoder for calls: the board's V4L2 mem2mem decoder, or libavcodec in software.
/// Set for low delay: one access unit in, at most one picture out, nothing reordered.
///
/// Not thread-safe: one decode thread drives it.
public protocol VideoDecoder: AnyObject {
    /// Decodes one Annex B access unit into `picture` (resized when the stream's size
    /// changes). Never traps on bad input.
    func decode(_ accessUnit: UnsafeRawBufferPointer, into picture: inout I420Picture) -> DecodeResult
    /// Forgets all references (after a gap the next keyframe starts afresh).
    func reset()
    /// What it is, for logs and status (`libavcodec h264`).
    var name: String { get }
}

/// libavcodec's H.264 decoder, set for low delay: `LOW_DELAY` and `FAST` flags, one slice
/// thread (frame threads would hold frames back), no output of frames it knows are corrupt
/// (they show as ``DecodeResult/noPicture`` and cause a keyframe request instead), and a
/// pixel budget so an SPS that claims a huge picture cannot make it allocate without bound.
public final class AVCodecH264Decoder: VideoDecoder {
    public var name: String { "libavcodec h264" }
    private var context: UnsafeMutablePointer<AVCodecContext>?
    private let packet: UnsafeMutablePointer<AVPacket>
    private let frame: UnsafeMutablePointer<AVFrame>
    private var input: [UInt8] = []
    /// The largest picture accepted: 1920 × 1088 (level 4.x, what the boards' screens show).
    public static let maxPixels = 1920 * 1088

    public init() throws(CodecError) {
        // libavcodec is loaded now (dlopen), not at start: only a device with a screen decodes.
        var err = [CChar](repeating: 0, count: 400)
        guard cavc_load(&err, err.count) == 0 else {
            throw CodecError(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        av_log_set_level(AV_LOG_QUIET)
        guard let codec = avcodec_find_decoder(AV_CODEC_ID_H264) else { throw CodecError("libavcodec: no H.264 decoder in this build") }
        guard let p = av_packet_alloc(), let f = av_frame_alloc() else { throw CodecError("libavcodec: out of memory") }
        packet = p
        frame = f
        context = try AVCodecH264Decoder.open(codec)
    }

    private static func open(_ codec: UnsafePointer<AVCodec>) throws(CodecError) -> UnsafeMutablePointer<AVCodecContext> {
        guard let c = avcodec_alloc_context3(codec) else { throw CodecError("libavcodec: out of memory") }
        cavc_set_low_delay(c)
        c.pointee.max_pixels = Int64(maxPixels)
        c.pointee.flags &= ~Int32(bitPattern: UInt32(AV_CODEC_FLAG_OUTPUT_CORRUPT))
        let rc = avcodec_open2(c, codec, nil)
        guard rc >= 0 else {
            var cc: UnsafeMutablePointer<AVCodecContext>? = c
            avcodec_free_context(&cc)
            throw CodecError("libavcodec: cannot open the H.264 decoder (\(AVCodecH264Decoder.describe(rc)))")
        }
        return c
    }

    deinit {
        avcodec_free_context(&context)
        var p: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&p)
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }

    public func reset() {
        if let context { avcodec_flush_buffers(context) }
    }

    public func decode(_ accessUnit: UnsafeRawBufferPointer, into picture: inout I420Picture) -> DecodeResult {
        guard let context else { return .failed("decoder not open") }
        guard !accessUnit.isEmpty else { return .noPicture }
        // libavcodec reads up to 64 bytes past the end: copy into a padded, reused buffer.
        let padded = accessUnit.count + Int(AV_INPUT_BUFFER_PADDING_SIZE)
        if input.count < padded { input = [UInt8](repeating: 0, count: padded) }
        let sent: Int32 = input.withUnsafeMutableBytes { buf in
            buf.copyMemory(from: accessUnit)
            (buf.baseAddress! + accessUnit.count).initializeMemory(as: UInt8.self, repeating: 0, count: Int(AV_INPUT_BUFFER_PADDING_SIZE))
            packet.pointee.data = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
            packet.pointee.size = Int32(accessUnit.count)
            defer { packet.pointee.data = nil; packet.pointee.size = 0 }
            return avcodec_send_packet(context, packet)
        }
        var failure: String?
        if sent < 0 && sent != cavc_error_eagain() { failure = "send: \(AVCodecH264Decoder.describe(sent))" }
        // One in, one out: with LOW_DELAY and no B-frames the picture is ready now.
        let got = avcodec_receive_frame(context, frame)
        if got == cavc_error_eagain() || got == cavc_error_eof() { return failure.map { .failed($0) } ?? .noPicture }
        if got < 0 { return .failed(failure ?? "receive: \(AVCodecH264Decoder.describe(got))") }
        defer { av_frame_unref(frame) }
        let f = frame.pointee
        let w = Int(f.width), h = Int(f.height)
        let format = AVPixelFormat(rawValue: f.format)
        guard w > 0, h > 0, w * h <= AVCodecH264Decoder.maxPixels,
              format == AV_PIX_FMT_YUV420P || format == AV_PIX_FMT_YUVJ420P,
              let y = f.data.0, let u = f.data.1, let v = f.data.2 else {
            return .failed("unsupported picture \(w)x\(h) format \(f.format)")
        }
        picture.resize(width: w, height: h)
        let cw = picture.chromaWidth, ch = picture.chromaHeight
        picture.bytes.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            copyPlane(from: y, stride: Int(f.linesize.0), to: base, width: w, height: h)
            copyPlane(from: u, stride: Int(f.linesize.1), to: base + w * h, width: cw, height: ch)
            copyPlane(from: v, stride: Int(f.linesize.2), to: base + w * h + cw * ch, width: cw, height: ch)
        }
        return .picture(concealed: cavc_frame_is_corrupt(frame) != 0 || failure != nil)
    }

    private func copyPlane(from src: UnsafeMutablePointer<UInt8>, stride: Int, to dst: UnsafeMutablePointer<UInt8>, width: Int, height: Int) {
        for row in 0..<height {
            (dst + row * width).update(from: src + row * stride, count: width)
        }
    }

    static func describe(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 128)
        av_strerror(code, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
