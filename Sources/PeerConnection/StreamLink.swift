import DTLS
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A TCP (or TLS over TCP) connection to a TURN server, non-blocking, framed as RFC 8656
/// §11.5 asks: STUN messages and ChannelData (padded to four bytes) back to back.
final class StreamLink {
    let fd: Int32
    let tls: TLSClientStream?
    private var connected = false
    private var pendingOut: [[UInt8]] = []
    private var inbox: [UInt8] = []
    private(set) var failure: String?

    init(server: TransportAddress, source: TransportAddress?, tls: Bool) throws {
        let family = server.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("TURN TCP socket") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let source, let any = TransportAddress(ip: source.ip, port: 0) { _ = any.withSockAddr { bind(fd, $0, $1) } }
        let r = server.withSockAddr { connect(fd, $0, $1) }
        if r != 0 && errno != EINPROGRESS { let e = SocketError("connect to TURN server \(server)"); close(fd); throw e }
        self.fd = fd
        self.tls = tls ? try TLSClientStream(fd: fd, serverName: nil, verify: false) : nil
    }

    deinit { close(fd) }

    var ready: Bool { connected && (tls?.handshakeDone ?? true) }

    /// poll() events this link waits for.
    var events: Int16 { Int16(POLLIN) | (!connected || !pendingOut.isEmpty ? Int16(POLLOUT) : 0) }

    /// Sends a frame now, or once the connection (and TLS handshake) is up.
    func write(_ frame: [UInt8]) {
        if !ready || !pendingOut.isEmpty { pendingOut.append(frame); return }
        if !rawWrite(frame) { pendingOut.append(frame) }
    }

    private func rawWrite(_ frame: [UInt8]) -> Bool {
        if let tls { return tls.write(frame) }
        let n = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return n == frame.count
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
        while let f = pendingOut.first, rawWrite(f) { pendingOut.removeFirst() }
        var n: Int
        if let tls {
            n = tls.read(into: &inbox)
        } else {
            var chunk = [UInt8](repeating: 0, count: 16384)
            n = 0
            while true {
                let r = recv(fd, &chunk, chunk.count, 0)
                if r > 0 { inbox += chunk[0..<r]; n += r; continue }
                if r == 0 { n = n > 0 ? n : -1 }
                break
            }
        }
        if n < 0 { failure = "the TURN server closed the connection" }
        var frames: [[UInt8]] = []
        while inbox.count >= 4 {
            let length = Int(inbox[2]) << 8 | Int(inbox[3])
            let total: Int
            if inbox[0] >= 64 && inbox[0] <= 79 { total = (4 + length + 3) & ~3 } else { total = 20 + length }
            guard inbox.count >= total else { break }
            let frameLength = inbox[0] >= 64 && inbox[0] <= 79 ? 4 + length : total
            frames.append(Array(inbox[0..<frameLength]))
            inbox.removeFirst(total)
        }
        return frames
    }
}
