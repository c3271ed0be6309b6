import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A screen the device draws on: the board's DRM/KMS output or the simulator's
/// off-screen framebuffer. Driven by one display thread.
public protocol Display: AnyObject {
    /// The mode's size in pixels.
    var width: Int { get }
    var height: Int { get }
    /// What it is, for logs and status (`simulated 1280x720`, `drm card0 HDMI-A-1 1920x1080@60`).
    var name: String { get }
    /// Shows `frame` at the next vertical blank (no tearing) and returns when it is on
    /// screen (the flip's time), or nil when it could not be shown.
    func present(_ frame: Framebuffer) -> Instant?
    /// Releases the device (buffers, mode); presenting afterwards does nothing.
    func close()
}

/// The simulator's display: presents into an in-memory XRGB8888 framebuffer, paced like a
/// 60 Hz screen (a flip lands on the next 16.7 ms vblank), so timing figures include the
/// wait a real screen adds.
public final class OffscreenDisplay: Display, @unchecked Sendable {
    public let width: Int
    public let height: Int
    public let refreshHz: Int
    private let lock = Lock()
    private var shown: Framebuffer
    private var flips: UInt64 = 0
    private let epoch = Instant.now()
    private let sleeps: Bool

    /// `pacedToVblank` false flips at once (unit tests).
    public init(width: Int = 1280, height: Int = 720, refreshHz: Int = 60, pacedToVblank: Bool = true) {
        self.width = width
        self.height = height
        self.refreshHz = refreshHz
        sleeps = pacedToVblank
        shown = Framebuffer(width: width, height: height)
    }

    public var name: String { "simulated \(width)x\(height)@\(refreshHz)" }

    public func present(_ frame: Framebuffer) -> Instant? {
        var flipAt = Instant.now()
        if sleeps {
            let period = 1_000_000_000 / UInt64(max(1, refreshHz))
            let since = flipAt.nanoseconds &- epoch.nanoseconds
            let next = epoch.nanoseconds + (since / period + 1) * period
            let wait = next - flipAt.nanoseconds
            var ts = timespec(tv_sec: 0, tv_nsec: Int(wait))
            nanosleep(&ts, nil)
            flipAt = Instant(nanoseconds: next)
        }
        lock.withLock {
            // Copied into its own buffer (as a flip copies into a dumb buffer): the caller's
            // framebuffer stays unshared, so drawing the next frame allocates nothing.
            if shown.width == frame.width && shown.height == frame.height {
                shown.pixels.withUnsafeMutableBufferPointer { dst in
                    frame.pixels.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress!, count: min(dst.count, $0.count)) }
                }
            } else {
                shown = Framebuffer(width: frame.width, height: frame.height)
                shown.pixels = frame.pixels
            }
            flips += 1
        }
        return flipAt
    }

    /// What the screen shows now (a copy).
    public var current: Framebuffer { lock.withLock { shown } }
    public var flipCount: UInt64 { lock.withLock { flips } }
    public func close() {}
}
