import CV4L2
import MediaDevices
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a camera could not be used: the device and what went wrong.
public struct CameraError: Error, CustomStringConvertible {
    public let description: String
    init(_ device: String, _ what: String) { description = "camera \(device): \(what): \(String(cString: strerror(errno)))" }
}

/// A V4L2 camera through libv4l2, which converts whatever the driver delivers (YUYV,
/// NV12, MJPEG, ...) to I420 for us. Frames are read on the camera's own thread; a slow
/// encoder makes it skip frames rather than queue them.
public final class V4L2Camera: VideoSource, @unchecked Sendable {
    public let device: String
    public private(set) var width: Int
    public private(set) var height: Int
    public let fps: Int
    private var fd: Int32 = -1
    private let buffer: UnsafeMutableRawBufferPointer
    private let running = Locked(false)
    private var thread: pthread_t?

    /// Opens `device` and asks for `width`×`height` I420 at `fps`; the driver may pick the
    /// nearest size it has.
    public init(device: String, width: Int, height: Int, fps: Int) throws(CameraError) {
        self.device = device
        self.fps = fps
        let fd = cv4l2_open(device)
        guard fd >= 0 else { throw CameraError(device, "cannot open") }
        var fmt = v4l2_format()
        fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        fmt.fmt.pix.width = UInt32(width)
        fmt.fmt.pix.height = UInt32(height)
        fmt.fmt.pix.pixelformat = CV4L2_PIX_FMT_YUV420
        fmt.fmt.pix.field = V4L2_FIELD_NONE.rawValue
        guard cv4l2_ioctl(fd, CV4L2_VIDIOC_S_FMT, &fmt) == 0, fmt.fmt.pix.pixelformat == CV4L2_PIX_FMT_YUV420 else {
            let e = CameraError(device, "no I420 format (even through libv4lconvert)")
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
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(fmt.fmt.pix.sizeimage) + 4096, alignment: 64)
    }

    deinit {
        stop()
        if fd >= 0 { v4l2_close(fd) }
        buffer.deallocate()
    }

    public func start(_ onFrame: @escaping @Sendable (VideoFrame) -> Void) throws {
        guard running.withLock({ r -> Bool in defer { r = true }; return !r }) else { return }
        let size = width * height * 3 / 2
        thread = startThread(name: "v4l2") { [self] in
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while running.current {
                // v4l2_read hands over the newest converted frame.
                if poll(&pfd, 1, 200) <= 0 { continue }
                let n = v4l2_read(fd, buffer.baseAddress, buffer.count)
                guard n >= size else { continue }
                onFrame(VideoFrame(width: width, height: height, buffer: UnsafeRawBufferPointer(rebasing: buffer[0..<size]),
                                   captureTime: Instant.now(), captureNTP: NTPTime.now()))
            }
        }
    }

    public func stop() {
        running.withLock { $0 = false }
        join(thread)
        thread = nil
    }
}
