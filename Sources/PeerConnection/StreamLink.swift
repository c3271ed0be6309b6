import DTLS
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A TCP (or TLS over TCP) connection to a TURN server, non-blocking, framed as RFC 8656
/// §11.5 asks: STUN messages and ChannelData (padded to four bytes) back to back.
///
/// What waits to go out is bounded (``maxPendingBytes``): a frame that does not fit is
/// dropped whole (counted), never cut, and a partial send keeps its remainder in order.
/// What is read in is bounded likewise (``maxInboxBytes``) between two services.
final class StreamLink {
    let fd: Int32
    let tls: TLSClientStream?
    private var connected = false
    /// Bytes accepted for sending and not yet written, from `outboxStart` on.
    private var outbox: [UInt8] = []
    private var outboxStart = 0
    private var inbox: [UInt8] = []
    private(set) var failure: String?
    /// Frames dropped because the pending output was full.
    private(set) var droppedFrames = 0
    static let maxPendingBytes = 256 * 1024
    static let maxInboxBytes = 256 * 1024

    /// - Parameters:
    ///   - tls: TLS over the TCP connection; then `verify` checks the server's certificate
    ///     against `caFile` (a PEM bundle) or the system's CAs, and its name against
    ///     `serverName` or, when nil, the server's IP address.
    convenience init(server: TransportAddress, source: TransportAddress?, tls: Bool) throws {
        try self.init(server: server, source: source, tls: tls, verify: true, caFile: nil, serverName: nil)
    }

    init(server: TransportAddress, source: TransportAddress?, tls: Bool, verify: Bool, caFile: String?, serverName: String?) throws {
        let family = server.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("TURN TCP socket") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let source, let any = TransportAddress(ip: source.ip, port: 0) { _ = any.withSockAddr { bind(fd, $0, $1) } }
        let r = server.withSockAddr { connect(fd, $0, $1) }
        if r != 0 && errno != EINPROGRESS { let e = SocketError("connect to TURN server \(server)"); close(fd); throw e }
        self.fd = fd
        do {
            self.tls = tls ? try TLSClientStream(fd: fd, serverName: serverName, verify: verify, caFile: caFile, expectedIP: serverName == nil ? server.host : nil) : nil
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    var ready: Bool { connected && (tls?.handshakeDone ?? true) }

    /// Bytes waiting to be written.
    var pendingBytes: Int { outbox.count - outboxStart }

    /// poll() events this link waits for.
    var events: Int16 { Int16(POLLIN) | (!connected || pendingBytes > 0 ? Int16(POLLOUT) : 0) }

    /// Sends a frame now, or once the connection (and TLS handshake) is up; returns false
    /// (and drops the frame) when the pending output is full or the link has failed.
    @discardableResult
    func write(_ frame: [UInt8]) -> Bool {
        guard failure == nil else { return false }
        guard pendingBytes + frame.count <= StreamLink.maxPendingBytes else {
            droppedFrames += 1
            return false
        }
        outbox.append(contentsOf: frame)
        if ready { flush() }
        return true
    }

    /// Writes as much of the outbox as the socket takes; keeps the rest, in order.
    private func flush() {
        while pendingBytes > 0 {
            let n = outbox[outboxStart...].withUnsafeBytes { b -> Int in
                if let tls { return tls.write(b) }
                let r = send(fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL))
                return r >= 0 ? r : (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1)
            }
            if n < 0 {
                failure = tls?.failure ?? "cannot write to the TURN server: \(String(cString: strerror(errno)))"
                break
            }
            if n == 0 { break }
            outboxStart += n
        }
        if outboxStart == outbox.count {
            outbox.removeAll(keepingCapacity: outbox.capacity <= 64 * 1024)
            outboxStart = 0
        } else if outboxStart >= 64 * 1024 {
            outbox.removeFirst(outboxStart)
            outboxStart = 0
        }
    }

    /// Progresses connect and handshake, flushes what waits, reads what arrived; returns
    /// complete frames.
    func service() -> [[UInt8]] {
        if !connected {
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if err != 0 { failure = "cannot connect: \(String(cString: strerror(err)))"; return [] }
            if poll(&pfd, 1, 0) > 0 && pfd.revents & Int16(POLLOUT) != 0 { connected = true } else { return [] }
        }
        if let tls, !tls.handshakeDone {
            if !tls.handshake() {
                if let f = tls.failure { failure = f }
                return []
            }
        }
        flush()
        let room = max(0, StreamLink.maxInboxBytes - inbox.count)
        var n: Int
        if let tls {
            n = tls.read(into: &inbox, max: room)
        } else {
            var chunk = [UInt8](repeating: 0, count: 16384)
            n = 0
            while n < room {
                let r = recv(fd, &chunk, min(chunk.count, room - n), 0)
                if r > 0 { inbox += chunk[0..<r]; n += r; continue }
                if r == 0 { n = n > 0 ? n : -1 }
                break
            }
        }
        if n < 0 { failure = "the TURN server closed the connection" }
        return StreamLink.takeFrames(&inbox)
    }

    /// Splits complete frames off the front of `inbox` (RFC 8656 §11.5: STUN messages and
    /// ChannelData padded to four bytes); leaves a partial one there.
    static func takeFrames(_ inbox: inout [UInt8]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var at = 0
        while inbox.count - at >= 4 {
            let length = Int(inbox[at + 2]) << 8 | Int(inbox[at + 3])
            let channelData = inbox[at] >= 64 && inbox[at] <= 79
            let total = channelData ? (4 + length + 3) & ~3 : 20 + length
            guard inbox.count - at >= total else { break }
            frames.append(Array(inbox[at..<(at + (channelData ? 4 + length : total))]))
            at += total
        }
        if at > 0 { inbox.removeFirst(at) }
        return frames
    }
}
