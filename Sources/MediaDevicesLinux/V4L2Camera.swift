import CV4L2
import MediaDevices
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a camera could not be used: the device and what went wrong.
public struct CameraError: Error, CustomStringConvertible {
    public let description: String
    init(_ device: String, _ what: String, errno e: Int32 = errno) {
        description = "camera \(device): \(what): \(String(cString: strerror(e)))"
    }
    init(_ device: String, _ what: String, reason: String) { description = "camera \(device): \(what): \(reason)" }
}

/// One open V4L2 capture device streaming I420 through libv4l2 (which converts YUYV,
/// NV12, MJPEG, ... with libv4lconvert) into a small ring of mmap buffers.
final class V4L2Stream {
    let fd: Int32
    let width: Int
    let height: Int
    private var buffers: [(UnsafeMutableRawPointer, Int)] = []
    /// Three buffers: one being filled, one ready, one with us. Deeper rings only add delay.
    static let ringSize: UInt32 = 3

    init(path: String, width: Int, height: Int, fps: Int) throws(CameraError) {
        do { try BoardLibrary.v4l2.load() } catch { throw CameraError(path, "cannot open", reason: error.description) }
        let fd = cv4l2_open(path)
        guard fd >= 0 else { throw CameraError(path, "cannot open") }
        var fmt = v4l2_format()
        fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        fmt.fmt.pix.width = UInt32(width)
        fmt.fmt.pix.height = UInt32(height)
        fmt.fmt.pix.pixelformat = CV4L2_PIX_FMT_YUV420
        fmt.fmt.pix.field = V4L2_FIELD_NONE.rawValue
        guard cv4l2_ioctl(fd, CV4L2_VIDIOC_S_FMT, &fmt) == 0, fmt.fmt.pix.pixelformat == CV4L2_PIX_FMT_YUV420 else {
            let e = CameraError(path, "no I420 format (even through libv4lconvert)")
            v4l2_close(fd)
            throw e
        }
        var parm = v4l2_streamparm()
        parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        parm.parm.capture.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(fps))
        _ = cv4l2_ioctl(fd, CV4L2_VIDIOC_S_PARM, &parm)  // best effort: not every driver takes it
        self.fd = fd
        self.width = Int(fmt.fmt.pix.width) & ~1
        self.height = Int(fmt.fmt.pix.height) & ~1

        var req = v4l2_requestbuffers()
        req.count = V4L2Stream.ringSize
        req.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        req.memory = V4L2_MEMORY_MMAP.rawValue
        guard cv4l2_ioctl(fd, CV4L2_VIDIOC_REQBUFS, &req) == 0, req.count >= 2 else {
            let e = CameraError(path, "no mmap streaming")
            v4l2_close(fd)
            throw e
        }
        for i in 0..<req.count {
            var b = v4l2_buffer()
            b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
            b.memory = V4L2_MEMORY_MMAP.rawValue
            b.index = i
            guard cv4l2_ioctl(fd, CV4L2_VIDIOC_QUERYBUF, &b) == 0,
                  let p = cv4l2_mmap(fd, Int(b.length), Int(b.m.offset)),
                  cv4l2_ioctl(fd, CV4L2_VIDIOC_QBUF, &b) == 0 else {
                let e = CameraError(path, "cannot map capture buffers")
                close()
                throw e
            }
            buffers.append((p, Int(b.length)))
        }
        var type = Int32(V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue)
        guard cv4l2_ioctl(fd, CV4L2_VIDIOC_STREAMON, &type) == 0 else {
            let e = CameraError(path, "cannot start streaming")
            close()
            throw e
        }
    }

    private var closed = false
    func close() {
        guard !closed else { return }
        closed = true
        var type = Int32(V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue)
        _ = cv4l2_ioctl(fd, CV4L2_VIDIOC_STREAMOFF, &type)
        for (p, n) in buffers { v4l2_munmap(p, n) }
        buffers = []
        v4l2_close(fd)
    }

    deinit { close() }

    enum Next { case frame(index: UInt32, bytes: Int, time: Instant?), timeout, lost(Int32) }

    /// Waits up to `timeoutMs` for a frame; if several are ready, keeps the newest and
    /// gives the older ones straight back to the driver (latency over smoothness).
    func next(timeoutMs: Int32) -> Next {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = poll(&pfd, 1, timeoutMs)
        if r == 0 { return .timeout }
        if r < 0 { return errno == EINTR ? .timeout : .lost(errno) }
        if pfd.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 && pfd.revents & Int16(POLLIN) == 0 { return .lost(ENODEV) }
        var newest: v4l2_buffer?
        repeat {
            var b = v4l2_buffer()
            b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
            b.memory = V4L2_MEMORY_MMAP.rawValue
            if cv4l2_ioctl(fd, CV4L2_VIDIOC_DQBUF, &b) != 0 {
                let e = errno
                if newest == nil && e != EAGAIN && e != EINTR { return .lost(e) }
                break
            }
            if var older = newest { requeue(&older) }
            newest = b
            // Another one ready already? (Asking poll first: libv4l2 logs every failed DQBUF.)
            pfd.revents = 0
        } while poll(&pfd, 1, 0) > 0 && pfd.revents & Int16(POLLIN) != 0
        guard let b = newest else { return .timeout }
        var time: Instant? = nil
        if b.flags & CV4L2_BUF_FLAG_TIMESTAMP_MASK == CV4L2_BUF_FLAG_TIMESTAMP_MONOTONIC, b.timestamp.tv_sec > 0 {
            // The driver's capture moment, on the clock Instant uses.
            time = Instant(nanoseconds: UInt64(clamping: b.timestamp.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: b.timestamp.tv_usec) &* 1000)
        }
        return .frame(index: b.index, bytes: Int(b.bytesused), time: time)
    }

    func buffer(_ index: UInt32) -> UnsafeMutableRawPointer { buffers[Int(index)].0 }

    func requeue(_ index: UInt32) {
        var b = v4l2_buffer()
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        b.memory = V4L2_MEMORY_MMAP.rawValue
        b.index = index
        requeue(&b)
    }

    private func requeue(_ b: inout v4l2_buffer) { _ = cv4l2_ioctl(fd, CV4L2_VIDIOC_QBUF, &b) }

    /// Finds a capture device by path (`/dev/video0`) or by its card name (`vivid`, the
    /// name `v4l2-ctl --list-devices` shows; a prefix is enough).
    static func resolve(_ device: String) -> String? {
        if device.hasPrefix("/") { return device }
        for i in 0..<64 {
            let path = "/dev/video\(i)"
            let fd = open(path, O_RDWR | O_NONBLOCK)
            guard fd >= 0 else { continue }
            defer { Glibc.close(fd) }
            var cap = v4l2_capability()
            guard ioctl(fd, CV4L2_VIDIOC_QUERYCAP, &cap) == 0 else { continue }
            let caps = cap.capabilities & CV4L2_CAP_DEVICE_CAPS != 0 ? cap.device_caps : cap.capabilities
            guard caps & CV4L2_CAP_VIDEO_CAPTURE != 0 else { continue }
            let card = withUnsafeBytes(of: cap.card) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if card.hasPrefix(device) { return path }
        }
        return nil
    }
}

/// A V4L2 camera: mmap streaming through libv4l2 (any driver format converted to I420),
/// the driver's capture timestamps, and the newest frame only. When the device goes away
/// (unplugged, driver reset) it says so through `onAvailability`, keeps trying to open it
/// again, and carries on when it returns; the call keeps its audio meanwhile.
public final class V4L2Camera: VideoSource, @unchecked Sendable {
    /// The device as configured: a path, or a card name.
    public let device: String
    public private(set) var width: Int
    public private(set) var height: Int
    public let fps: Int
    private var stream: V4L2Stream?
    private let loop = DeviceThread()
    /// Called from the camera thread when the camera is lost (with why) or back (nil).
    public var onAvailability: (@Sendable (CameraError?) -> Void)?

    /// Opens `device` and asks for `width`×`height` I420 at `fps`; the driver may pick the
    /// nearest size it has.
    public init(device: String, width: Int, height: Int, fps: Int) throws(CameraError) {
        self.device = device
        self.fps = fps
        guard let path = V4L2Stream.resolve(device) else { throw CameraError(device, "no capture device with that card name", reason: "not found") }
        let s = try V4L2Stream(path: path, width: width, height: height, fps: fps)
        stream = s
        self.width = s.width
        self.height = s.height
    }

    deinit { stop() }

    public func start(_ onFrame: @escaping @Sendable (VideoFrame) -> Void) throws {
        loop.start(name: "v4l2") { [self] in run(onFrame) }
    }

    private func run(_ onFrame: @escaping @Sendable (VideoFrame) -> Void) {
        let requested = (width, height)
        while loop.isRunning {
            guard let s = stream else {
                // Lost: try again every second until the device is back.
                usleep(1_000_000)
                guard loop.isRunning, let path = V4L2Stream.resolve(device),
                      let s = try? V4L2Stream(path: path, width: requested.0, height: requested.1, fps: fps) else { continue }
                stream = s
                width = s.width
                height = s.height
                onAvailability?(nil)
                continue
            }
            switch s.next(timeoutMs: 200) {
            case .timeout:
                continue
            case .lost(let e):
                s.close()
                stream = nil
                onAvailability?(CameraError(device, "lost", errno: e))
            case .frame(let index, let bytes, let time):
                let size = s.width * s.height * 3 / 2
                if bytes >= size {
                    // The same moment on the wall clock, for abs-capture-time.
                    let now = Instant.now()
                    let captured = time.map { min($0, now) } ?? now
                    // A driver's timestamp may be seconds old (a buffer queued before a
                    // stall, a camera that came back): no overflow, whatever the age.
                    let ageNTP = NTPTime.span(nanoseconds: (now - captured).nanosecondsInt)
                    onFrame(VideoFrame(width: s.width, height: s.height,
                                       buffer: UnsafeRawBufferPointer(start: s.buffer(index), count: size),
                                       captureTime: captured, captureNTP: NTPTime.now() &- ageNTP))
                }
                s.requeue(index)
            }
        }
    }

    public func stop() { loop.stop() }
}
