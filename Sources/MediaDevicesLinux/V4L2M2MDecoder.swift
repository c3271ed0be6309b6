import Codecs
import CV4L2
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A V4L2 memory-to-memory stateful hardware decoder (the Raspberry Pi 4's bcm2835-codec
/// and the like), through the multi-planar API, mirroring ``V4L2M2MEncoder``.
///
/// Access units go into the OUTPUT queue; the driver parses the stream, announces its size
/// with a source-change event, and decoded pictures come back on the CAPTURE queue (set up
/// then, and again when the size changes), as I420 or NV12, converted here to I420. A
/// picture the driver flags as erroneous is reported as a failure (the caller asks for a
/// keyframe). Each access unit waits at most 200 ms for its picture; stateful decoders
/// that hold frames back show as ``DecodeResult/noPicture`` until they catch up.
///
/// The emulated board exercises this path with vicodec's decoder, which speaks FWHT rather
/// than H.264 (`videophoned --check-decoder :FWHT`); H.264 needs a real board.
public final class V4L2M2MDecoder: VideoDecoder {
    public let path: String
    public let card: String
    public let codedFormat: UInt32
    public var name: String { "v4l2 \(path) (\(card))" }

    private let fd: Int32
    private var codedBuffers: [(UnsafeMutableRawPointer, Int)] = []
    private var freeCoded: [UInt32] = []
    private var captureBuffers: [(UnsafeMutableRawPointer, Int)] = []
    private var captureOn = false
    private var rawFormat: UInt32 = 0
    private var stride = 0
    private var planeHeight = 0
    private var width = 0
    private var height = 0
    private var sequence = 0

    static let outputType = V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE.rawValue
    static let captureType = V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE.rawValue
    /// The largest access unit taken (a 1080p IDR at a high rate fits).
    public static let codedBufferSize = 2 << 20

    /// Opens `path`, decoding `codedFormat` (H.264 unless testing).
    public init(path: String, codedFormat: UInt32 = CV4L2_PIX_FMT_H264) throws(CodecError) {
        self.path = path
        self.codedFormat = codedFormat
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw CodecError("decoder \(path): cannot open: \(String(cString: strerror(errno)))") }
        guard let info = V4L2M2MDecoder.describe(fd: fd), info.decodes(codedFormat) else {
            close(fd)
            throw CodecError("decoder \(path): not a multi-planar mem2mem decoder from \(fourcc(codedFormat)) to I420 or NV12")
        }
        card = info.card
        do throws(CodecError) { try configure() } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    private func fail(_ what: String) -> CodecError {
        CodecError("decoder \(path): \(what): \(String(cString: strerror(errno)))")
    }

    private func configure() throws(CodecError) {
        var f = v4l2_format()
        f.type = V4L2M2MDecoder.outputType
        f.fmt.pix_mp.width = 1280
        f.fmt.pix_mp.height = 720
        f.fmt.pix_mp.pixelformat = codedFormat
        f.fmt.pix_mp.num_planes = 1
        f.fmt.pix_mp.plane_fmt.0.sizeimage = UInt32(V4L2M2MDecoder.codedBufferSize)
        guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_S_FMT, &f) == 0 else { throw fail("coded format \(fourcc(codedFormat))") }
        guard cv4l2_subscribe_source_change(fd) == 0 else { throw fail("source-change events") }
        codedBuffers = try mapBuffers(type: V4L2M2MDecoder.outputType, count: 4)
        freeCoded = (0..<UInt32(codedBuffers.count)).map { $0 }
        try stream(V4L2M2MDecoder.outputType, on: true)
    }

    private func stream(_ type: UInt32, on: Bool) throws(CodecError) {
        var t = Int32(type)
        guard cv4l2_raw_ioctl(fd, on ? CV4L2_VIDIOC_STREAMON : CV4L2_VIDIOC_STREAMOFF, &t) == 0 else {
            throw fail(on ? "stream on" : "stream off")
        }
    }

    private func mapBuffers(type: UInt32, count: UInt32) throws(CodecError) -> [(UnsafeMutableRawPointer, Int)] {
        var req = v4l2_requestbuffers()
        req.count = count
        req.type = type
        req.memory = V4L2_MEMORY_MMAP.rawValue
        guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_REQBUFS, &req) == 0, req.count >= 1 else { throw fail("request buffers") }
        var out: [(UnsafeMutableRawPointer, Int)] = []
        for i in 0..<req.count {
            var plane = v4l2_plane()
            var b = v4l2_buffer()
            b.type = type
            b.memory = V4L2_MEMORY_MMAP.rawValue
            b.index = i
            b.length = 1
            let ok = withUnsafeMutablePointer(to: &plane) { p -> Bool in
                b.m.planes = p
                return cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_QUERYBUF, &b) == 0
            }
            guard ok else { throw fail("query buffer") }
            let p = mmap(nil, Int(plane.length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(plane.m.mem_offset))
            guard let p, p != MAP_FAILED else { throw fail("map buffer") }
            out.append((p, Int(plane.length)))
        }
        return out
    }

    private func queue(type: UInt32, index: UInt32, bytes: Int) -> Bool {
        var plane = v4l2_plane()
        plane.bytesused = UInt32(bytes)
        plane.length = UInt32(type == V4L2M2MDecoder.outputType ? codedBuffers[Int(index)].1 : captureBuffers[Int(index)].1)
        var b = v4l2_buffer()
        b.type = type
        b.memory = V4L2_MEMORY_MMAP.rawValue
        b.index = index
        b.length = 1
        if type == V4L2M2MDecoder.outputType {
            b.timestamp.tv_sec = sequence / 1_000_000
            b.timestamp.tv_usec = sequence % 1_000_000
        }
        return withUnsafeMutablePointer(to: &plane) { p in
            b.m.planes = p
            return cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_QBUF, &b) == 0
        }
    }

    /// Dequeues one buffer of `type` if ready: (index, bytes used, data offset, flags).
    private func dequeue(type: UInt32) -> (UInt32, Int, Int, UInt32)? {
        var plane = v4l2_plane()
        var b = v4l2_buffer()
        b.type = type
        b.memory = V4L2_MEMORY_MMAP.rawValue
        b.length = 1
        let ok = withUnsafeMutablePointer(to: &plane) { p -> Bool in
            b.m.planes = p
            return cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_DQBUF, &b) == 0
        }
        return ok ? (b.index, Int(plane.bytesused), Int(plane.data_offset), b.flags) : nil
    }

    /// The stream's size is known or changed: (re)creates the CAPTURE queue for it.
    private func setUpCapture() throws(CodecError) {
        if captureOn {
            try? stream(V4L2M2MDecoder.captureType, on: false)
            for (p, n) in captureBuffers { munmap(p, n) }
            captureBuffers = []
            var req = v4l2_requestbuffers()
            req.type = V4L2M2MDecoder.captureType
            req.memory = V4L2_MEMORY_MMAP.rawValue
            _ = cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_REQBUFS, &req)
            captureOn = false
        }
        var f = v4l2_format()
        f.type = V4L2M2MDecoder.captureType
        guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_G_FMT, &f) == 0 else { throw fail("decoded format") }
        let codedW = f.fmt.pix_mp.width, codedH = f.fmt.pix_mp.height
        // I420 when the driver offers it, else NV12.
        for wanted in [CV4L2_PIX_FMT_YUV420, CV4L2_PIX_FMT_NV12] {
            var g = f
            g.fmt.pix_mp.pixelformat = wanted
            g.fmt.pix_mp.num_planes = 1
            if cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_S_FMT, &g) == 0, g.fmt.pix_mp.pixelformat == wanted, g.fmt.pix_mp.num_planes == 1 {
                f = g
                break
            }
        }
        rawFormat = f.fmt.pix_mp.pixelformat
        guard rawFormat == CV4L2_PIX_FMT_YUV420 || rawFormat == CV4L2_PIX_FMT_NV12 else {
            errno = EINVAL
            throw fail("no single-plane I420 or NV12 output (driver offers \(fourcc(rawFormat)))")
        }
        stride = Int(f.fmt.pix_mp.plane_fmt.0.bytesperline)
        planeHeight = Int(f.fmt.pix_mp.height)
        var vw: UInt32 = 0, vh: UInt32 = 0
        if cv4l2_visible_size(fd, &vw, &vh) == 0, vw > 0, vh > 0, vw <= codedW, vh <= codedH {
            width = Int(vw); height = Int(vh)
        } else {
            width = Int(codedW); height = Int(codedH)
        }
        guard width > 0, height > 0, width * height <= AVCodecH264Decoder.maxPixels, stride >= width else {
            errno = EINVAL
            throw fail("decoded size \(width)x\(height) (stride \(stride)) refused")
        }
        var minimum: Int32 = 0
        _ = cv4l2_get_ctrl(fd, CV4L2_CID_MIN_BUFFERS_FOR_CAPTURE, &minimum)
        captureBuffers = try mapBuffers(type: V4L2M2MDecoder.captureType, count: UInt32(max(2, Int(minimum)) + 1))
        for i in 0..<UInt32(captureBuffers.count) {
            guard queue(type: V4L2M2MDecoder.captureType, index: i, bytes: 0) else { throw fail("queue picture buffer") }
        }
        try stream(V4L2M2MDecoder.captureType, on: true)
        captureOn = true
    }

    public func decode(_ accessUnit: UnsafeRawBufferPointer, into picture: inout I420Picture) -> DecodeResult {
        guard !accessUnit.isEmpty else { return .noPicture }
        guard accessUnit.count <= V4L2M2MDecoder.codedBufferSize else { return .failed("access unit of \(accessUnit.count) bytes is larger than the decoder's buffer") }
        while let (i, _, _, _) = dequeue(type: V4L2M2MDecoder.outputType) { freeCoded.append(i) }
        if freeCoded.isEmpty, wait(.milliseconds(100)), let (i, _, _, _) = dequeue(type: V4L2M2MDecoder.outputType) { freeCoded.append(i) }
        guard let index = freeCoded.popLast() else { return .failed("the decoder took no input for 100 ms") }
        guard accessUnit.count <= codedBuffers[Int(index)].1 else {
            freeCoded.append(index)
            return .failed("access unit of \(accessUnit.count) bytes is larger than the driver's buffer")
        }
        codedBuffers[Int(index)].0.copyMemory(from: accessUnit.baseAddress!, byteCount: accessUnit.count)
        sequence += 1
        guard queue(type: V4L2M2MDecoder.outputType, index: index, bytes: accessUnit.count) else {
            freeCoded.append(index)
            return .failed("queue access unit: \(String(cString: strerror(errno)))")
        }
        let deadline = Instant.now() + .milliseconds(200)
        while true {
            while true {
                let event = cv4l2_dequeue_event(fd)
                if event < 0 { break }
                if UInt32(event) == CV4L2_EVENT_SOURCE_CHANGE {
                    do throws(CodecError) { try setUpCapture() } catch { return .failed(error.description) }
                }
            }
            if captureOn, let (i, bytes, offset, flags) = dequeue(type: V4L2M2MDecoder.captureType) {
                defer { _ = queue(type: V4L2M2MDecoder.captureType, index: i, bytes: 0) }
                if flags & CV4L2_BUF_FLAG_ERROR != 0 { return .failed("the driver flagged the picture as damaged") }
                if bytes - offset <= 0 { continue }
                convert(captureBuffers[Int(i)].0 + offset, count: bytes - offset, into: &picture)
                return .picture(concealed: false)
            }
            let now = Instant.now()
            if now >= deadline || !wait(deadline - now) { return .noPicture }
        }
    }

    /// The driver's picture (padded rows, I420 or NV12) into a tightly packed I420.
    private func convert(_ src: UnsafeMutableRawPointer, count: Int, into picture: inout I420Picture) {
        picture.resize(width: width, height: height)
        let w = width, h = height, cw = picture.chromaWidth, ch = picture.chromaHeight
        let lumaSize = stride * planeHeight
        let s = src.assumingMemoryBound(to: UInt8.self)
        picture.bytes.withUnsafeMutableBufferPointer { out in
            let d = out.baseAddress!
            for row in 0..<h where (row + 1) * stride <= count { (d + row * w).update(from: s + row * stride, count: w) }
            if rawFormat == CV4L2_PIX_FMT_NV12 {
                for row in 0..<ch where lumaSize + (row + 1) * stride <= count {
                    let line = s + lumaSize + row * stride
                    for x in 0..<cw {
                        d[w * h + row * cw + x] = line[2 * x]
                        d[w * h + cw * ch + row * cw + x] = line[2 * x + 1]
                    }
                }
            } else {
                let cstride = stride / 2, cplane = cstride * (planeHeight / 2)
                for plane in 0..<2 {
                    for row in 0..<ch {
                        let from = lumaSize + plane * cplane + row * cstride
                        guard from + cw <= count else { break }
                        (d + w * h + plane * cw * ch + row * cw).update(from: s + from, count: cw)
                    }
                }
            }
        }
    }

    /// Waits until a buffer can be dequeued or an event is pending.
    private func wait(_ timeout: Duration) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT | POLLPRI), revents: 0)
        return poll(&pfd, 1, Int32(max(1, timeout.milliseconds))) > 0
    }

    /// Drops what the decoder holds (a seek): the next keyframe starts afresh.
    public func reset() {
        try? stream(V4L2M2MDecoder.outputType, on: false)
        try? stream(V4L2M2MDecoder.outputType, on: true)
        freeCoded = (0..<UInt32(codedBuffers.count)).map { $0 }
    }

    private func teardown() {
        guard fd >= 0 else { return }
        for type in [V4L2M2MDecoder.outputType, V4L2M2MDecoder.captureType] {
            var t = Int32(type)
            _ = cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_STREAMOFF, &t)
        }
        for (p, n) in codedBuffers + captureBuffers { munmap(p, n) }
        codedBuffers = []; captureBuffers = []
        close(fd)
    }

    struct DeviceInfo {
        var card: String
        var codedFormats: [UInt32]
        var rawFormats: [UInt32]
        func decodes(_ f: UInt32) -> Bool {
            codedFormats.contains(f) && (rawFormats.contains(CV4L2_PIX_FMT_YUV420) || rawFormats.contains(CV4L2_PIX_FMT_NV12))
        }
    }

    static func describe(fd: Int32) -> DeviceInfo? {
        var cap = v4l2_capability()
        guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_QUERYCAP, &cap) == 0 else { return nil }
        let caps = cap.capabilities & CV4L2_CAP_DEVICE_CAPS != 0 ? cap.device_caps : cap.capabilities
        guard caps & CV4L2_CAP_VIDEO_M2M_MPLANE != 0 else { return nil }
        func formats(_ type: UInt32) -> [UInt32] {
            var out: [UInt32] = []
            for i in 0..<64 {
                var d = v4l2_fmtdesc()
                d.index = UInt32(i)
                d.type = type
                guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_ENUM_FMT, &d) == 0 else { break }
                out.append(d.pixelformat)
            }
            return out
        }
        let card = withUnsafeBytes(of: cap.card) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return DeviceInfo(card: card, codedFormats: formats(outputType), rawFormats: formats(captureType))
    }

    /// The first device node that decodes `codedFormat` (H.264 unless testing) to I420 or NV12.
    public static func find(codedFormat: UInt32 = CV4L2_PIX_FMT_H264) -> (path: String, card: String)? {
        for i in 0..<64 {
            let path = "/dev/video\(i)"
            let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if let info = describe(fd: fd), info.decodes(codedFormat) { return (path, info.card) }
        }
        return nil
    }
}
