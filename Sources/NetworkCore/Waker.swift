#if canImport(Glibc)
import Glibc
#endif

/// Lets a thread sleep in `poll` until a timeout, a descriptor becomes readable, or
/// another thread calls ``wake()``: the one way our device threads wait, so stopping them
/// never waits out a timeout.
public final class Waker: @unchecked Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit { close(readEnd); close(writeEnd) }

    public func wake() {
        var b: UInt8 = 1
        _ = write(writeEnd, &b, 1)
    }

    /// Waits up to `timeout`; returns whether `fd` (if given) is readable. A wake-up is
    /// consumed, so the caller re-checks its own state after every return.
    @discardableResult
    public func wait(_ timeout: Duration, readable fd: Int32 = -1) -> Bool {
        let ms = Int32(clamping: max(0, Int64((timeout.milliseconds).rounded(.up))))
        var fds = [pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0), pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        _ = Glibc.poll(&fds, fd >= 0 ? 2 : 1, ms)
        if fds[0].revents != 0 {
            var buf = [UInt8](repeating: 0, count: 64)
            while read(readEnd, &buf, buf.count) > 0 {}
        }
        return fd >= 0 && fds[1].revents & Int16(POLLIN) != 0
    }

    /// Polls `fds` and this waker together for up to `timeout`: `fds[0]` is set to the
    /// waker's own descriptor (callers leave a slot for it there); a wake-up is consumed.
    public func poll(_ fds: inout [pollfd], timeout: Duration) {
        let ms = Int32(clamping: max(0, Int64((timeout.milliseconds).rounded(.up))))
        fds[0] = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&fds, nfds_t(fds.count), ms) as Int32
        if fds[0].revents != 0 {
            var buf = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while withUnsafeMutableBytes(of: &buf, { read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
        }
    }
}
