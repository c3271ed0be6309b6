import Codecs
import CV4L2
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A V4L2 memory-to-memory (stateful) hardware encoder: the Raspberry Pi 4's
/// bcm2835-codec, Hantro, Venus, MFC and the like, through the multi-planar API.
///
/// Raw I420 frames go into the OUTPUT queue, the bitstream comes back on the CAPTURE
/// queue; two buffers each, so one frame is being encoded while the next is filled. Asks
/// for Constrained Baseline, no B-frames, SPS/PPS before every IDR, CBR at the target
/// bitrate and a keyframe on demand; controls a driver refuses are listed in
/// ``refusedControls`` (the stream may then differ: e.g. without repeated headers).
///
/// The emulated board exercises this streaming path with vicodec, whose encoder speaks
/// FWHT rather than H.264: what only a real board can confirm is listed in the README.
public final class V4L2M2MEncoder: VideoEncoder {
    public private(set) var settings: H264EncoderSettings
    public let path: String
    public let card: String
    public let codedFormat: UInt32
    public private(set) var refusedControls: [String] = []
    public var name: String { "v4l2 \(path) (\(card))" }

    private let fd: Int32
    private var rawBuffers: [(UnsafeMutableRawPointer, Int)] = []
    private var codedBuffers: [(UnsafeMutableRawPointer, Int)] = []
    private var freeRaw: [UInt32] = []
    private var stride = 0
    private var planeHeight = 0
    private var rawSize = 0
    private let profileBytes: (UInt8, UInt8, UInt8)?
    private var sequence: Int64 = 0

    /// The H.264 fourcc, the format calls use.
    public static let h264 = CV4L2_PIX_FMT_H264
    static let outputType = V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE.rawValue
    static let captureType = V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE.rawValue

    /// Opens `path` for `settings`, producing `codedFormat` (H.264 unless testing).
    public init(path: String, settings: H264EncoderSettings, codedFormat: UInt32 = CV4L2_PIX_FMT_H264) throws(CodecError) {
        self.path = path
        self.settings = settings
        self.codedFormat = codedFormat
        profileBytes = codedFormat == CV4L2_PIX_FMT_H264 ? X264Encoder.parseProfileLevelID(settings.profileLevelID) : nil
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw CodecError("encoder \(path): cannot open: \(String(cString: strerror(errno)))") }
        guard let info = V4L2M2MEncoder.describe(fd: fd), info.encodes(codedFormat) else {
            close(fd)
            throw CodecError("encoder \(path): not a multi-planar mem2mem encoder from I420 to \(fourcc(codedFormat))")
        }
        card = info.card
        do throws(CodecError) { try configure() } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    private func fail(_ what: String) -> CodecError {
        CodecError("encoder \(path): \(what): \(String(cString: strerror(errno)))")
    }

    private func configure() throws(CodecError) {
        let w = settings.width, h = settings.height
        // Coded side first: some drivers derive the raw side's constraints from it.
        guard setFormat(V4L2M2MEncoder.captureType, codedFormat, sizeImage: max(w * h * 3 / 2, 512 * 1024)) != nil else {
            throw fail("coded format \(fourcc(codedFormat)) \(w)x\(h)")
        }
        guard let raw = setFormat(V4L2M2MEncoder.outputType, CV4L2_PIX_FMT_YUV420),
              raw.fmt.pix_mp.pixelformat == CV4L2_PIX_FMT_YUV420, raw.fmt.pix_mp.num_planes == 1 else {
            throw fail("raw format I420 \(w)x\(h)")
        }
        // The driver may pad rows (stride) and the plane's height (alignment).
        stride = Int(raw.fmt.pix_mp.plane_fmt.0.bytesperline)
        planeHeight = Int(raw.fmt.pix_mp.height)
        rawSize = Int(raw.fmt.pix_mp.plane_fmt.0.sizeimage)
        guard stride >= w, planeHeight >= h, rawSize >= stride * planeHeight * 3 / 2 else {
            errno = EINVAL
            throw fail("driver layout \(stride)x\(planeHeight) (\(rawSize) bytes)")
        }

        var parm = v4l2_streamparm()
        parm.type = V4L2M2MEncoder.outputType
        parm.parm.output.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(settings.fps))
        _ = cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_S_PARM, &parm)

        control(CV4L2_CID_BITRATE_MODE, Int32(CV4L2_BITRATE_MODE_CBR), "bitrate mode CBR")
        control(CV4L2_CID_BITRATE, Int32(settings.bitrateKbps * 1000), "bitrate")
        control(CV4L2_CID_GOP_SIZE, Int32(settings.keyframeInterval), "GOP size")
        control(CV4L2_CID_B_FRAMES, 0, "no B-frames")
        if codedFormat == CV4L2_PIX_FMT_H264 {
            control(CV4L2_CID_H264_PROFILE, Int32(CV4L2_H264_PROFILE_CONSTRAINED_BASELINE), "Constrained Baseline")
            control(CV4L2_CID_H264_I_PERIOD, Int32(settings.keyframeInterval), "IDR period")
            control(CV4L2_CID_REPEAT_SEQ_HEADER, 1, "SPS/PPS before every IDR")
            if let level = profileBytes.flatMap({ V4L2M2MEncoder.levelControl[$0.2] }) {
                control(CV4L2_CID_H264_LEVEL, level, "level")
            }
        }

        rawBuffers = try mapBuffers(type: V4L2M2MEncoder.outputType, count: 2)
        codedBuffers = try mapBuffers(type: V4L2M2MEncoder.captureType, count: 2)
        freeRaw = (0..<UInt32(rawBuffers.count)).map { $0 }
        for i in 0..<UInt32(codedBuffers.count) {
            guard queue(type: V4L2M2MEncoder.captureType, index: i, bytes: 0) else { throw fail("queue bitstream buffer") }
        }
        for type in [V4L2M2MEncoder.outputType, V4L2M2MEncoder.captureType] {
            var t = Int32(type)
            guard cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_STREAMON, &t) == 0 else { throw fail("stream on") }
        }
    }

    /// One single-plane format at the configured size on one queue; what the driver made of it.
    private func setFormat(_ type: UInt32, _ pixelFormat: UInt32, sizeImage: Int = 0) -> v4l2_format? {
        var f = v4l2_format()
        f.type = type
        f.fmt.pix_mp.width = UInt32(settings.width)
        f.fmt.pix_mp.height = UInt32(settings.height)
        f.fmt.pix_mp.pixelformat = pixelFormat
        f.fmt.pix_mp.num_planes = 1
        f.fmt.pix_mp.plane_fmt.0.sizeimage = UInt32(sizeImage)
        return cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_S_FMT, &f) == 0 ? f : nil
    }

    /// Sets a control; a refusal is remembered, not fatal (drivers differ).
    private func control(_ id: UInt32, _ value: Int32, _ what: String) {
        if cv4l2_set_ctrl(fd, id, value) != 0 { refusedControls.append(what) }
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
        plane.length = UInt32(type == V4L2M2MEncoder.outputType ? rawBuffers[Int(index)].1 : codedBuffers[Int(index)].1)
        var b = v4l2_buffer()
        b.type = type
        b.memory = V4L2_MEMORY_MMAP.rawValue
        b.index = index
        b.length = 1
        if type == V4L2M2MEncoder.outputType {
            b.timestamp.tv_sec = Int(sequence / 1_000_000)
            b.timestamp.tv_usec = Int(sequence % 1_000_000)
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

    public func encode(i420: UnsafeRawBufferPointer, forceKeyframe: Bool) -> EncodedVideoFrame? {
        let w = settings.width, h = settings.height
        guard i420.count >= w * h * 3 / 2, let src = i420.baseAddress else { return nil }
        // Take back raw buffers the encoder has finished with.
        while let (i, _, _, _) = dequeue(type: V4L2M2MEncoder.outputType) { freeRaw.append(i) }
        if freeRaw.isEmpty, wait(.seconds(1)), let (i, _, _, _) = dequeue(type: V4L2M2MEncoder.outputType) { freeRaw.append(i) }
        guard let index = freeRaw.popLast() else { return nil }
        // Copy row by row into the driver's layout (stride and plane height may be padded).
        let dst = rawBuffers[Int(index)].0
        for row in 0..<h { (dst + row * stride).copyMemory(from: src + row * w, byteCount: w) }
        let cw = w / 2, ch = h / 2, cstride = stride / 2
        for plane in 0..<2 {
            let s = src + w * h + plane * cw * ch
            let d = dst + stride * planeHeight + plane * cstride * (planeHeight / 2)
            for row in 0..<ch { (d + row * cstride).copyMemory(from: s + row * cw, byteCount: cw) }
        }
        if forceKeyframe { control(CV4L2_CID_FORCE_KEY_FRAME, 1, "keyframe on demand") }
        sequence += 1
        guard queue(type: V4L2M2MEncoder.outputType, index: index, bytes: rawSize) else {
            freeRaw.append(index)
            return nil
        }
        // Hardware encoders hand each frame back within a few ms; allow a frame time.
        let deadline = Instant.now() + .milliseconds(Int64(max(100, 2000 / max(1, settings.fps))))
        while true {
            if let (i, bytes, offset, flags) = dequeue(type: V4L2M2MEncoder.captureType) {
                let base = codedBuffers[Int(i)].0 + offset
                var data = [UInt8](UnsafeRawBufferPointer(start: base, count: max(0, bytes - offset)))
                _ = queue(type: V4L2M2MEncoder.captureType, index: i, bytes: 0)
                if data.isEmpty { continue }
                if let pb = profileBytes { X264Encoder.patchSPS(&data, profile: pb) }
                let key = flags & CV4L2_BUF_FLAG_KEYFRAME != 0 || (flags & CV4L2_BUF_FLAG_PFRAME == 0 && codedFormat != CV4L2_PIX_FMT_H264)
                return EncodedVideoFrame(data: data, isKeyframe: key)
            }
            let left = deadline - Instant.now()
            if left <= .zero || !wait(left) { return nil }
        }
    }

    /// Waits until a buffer can be dequeued.
    private func wait(_ timeout: Duration) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT), revents: 0)
        return poll(&pfd, 1, Int32(max(1, timeout.milliseconds))) > 0
    }

    public func setBitrate(kbps: Int) {
        guard kbps != settings.bitrateKbps else { return }
        if cv4l2_set_ctrl(fd, CV4L2_CID_BITRATE, Int32(kbps * 1000)) == 0 { settings.bitrateKbps = kbps }
    }

    private func teardown() {
        guard fd >= 0 else { return }
        for type in [V4L2M2MEncoder.outputType, V4L2M2MEncoder.captureType] {
            var t = Int32(type)
            _ = cv4l2_raw_ioctl(fd, CV4L2_VIDIOC_STREAMOFF, &t)
        }
        for (p, n) in rawBuffers + codedBuffers { munmap(p, n) }
        rawBuffers = []; codedBuffers = []
        close(fd)
    }

    /// level_idc → the V4L2 level control's value.
    static let levelControl: [UInt8: Int32] = [10: 0, 11: 2, 12: 3, 13: 4, 20: 5, 21: 6, 22: 7, 30: 8, 31: 9, 32: 10, 40: 11, 41: 12, 42: 13, 50: 14, 51: 15]

    /// What a device node is, if it is a multi-planar mem2mem device.
    struct DeviceInfo {
        var card: String
        var codedFormats: [UInt32]
        var rawFormats: [UInt32]
        func encodes(_ f: UInt32) -> Bool { codedFormats.contains(f) && rawFormats.contains(CV4L2_PIX_FMT_YUV420) }
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
        return DeviceInfo(card: card, codedFormats: formats(captureType), rawFormats: formats(outputType))
    }

    /// The first device node that encodes I420 to `codedFormat` (H.264 unless testing).
    public static func find(codedFormat: UInt32 = CV4L2_PIX_FMT_H264) -> (path: String, card: String)? {
        for i in 0..<64 {
            let path = "/dev/video\(i)"
            let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if let info = describe(fd: fd), info.encodes(codedFormat) { return (path, info.card) }
        }
        return nil
    }
}

/// `H264`, `FWHT`, ... from a V4L2 fourcc.
public func fourcc(_ f: UInt32) -> String {
    String(decoding: [UInt8(f & 0xFF), UInt8((f >> 8) & 0xFF), UInt8((f >> 16) & 0xFF), UInt8(f >> 24)], as: UTF8.self)
}

/// A V4L2 fourcc from its four letters.
public func fourcc(_ s: String) -> UInt32? {
    let b = Array(s.utf8)
    guard b.count == 4 else { return nil }
    return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
}
