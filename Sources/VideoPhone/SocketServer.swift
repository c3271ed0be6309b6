import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Answers one HTTP request. Called on the server's loop thread: it must return quickly,
/// handing slow work to another queue, and call ``HTTPResponder/respond(_:)`` exactly once,
/// from any thread, when the answer is ready.
public typealias HTTPHandler = @Sendable (HTTPRequest, HTTPResponder) -> Void
/// Answers one control-socket command line, like ``HTTPHandler``.
public typealias CommandHandler = @Sendable (String, CommandResponder) -> Void

/// Where a handler sends its HTTP answer.
public struct HTTPResponder: Sendable {
    let reply: @Sendable ([UInt8]) -> Void
    public func respond(_ r: HTTPResponse) { reply(HTTPServer.encode(r)) }
}

/// Where a command handler sends its reply.
public struct CommandResponder: Sendable {
    let reply: @Sendable ([UInt8]) -> Void
    public func respond(_ text: String) { reply(Array(text.utf8)) }
}

/// The device's sockets served from one thread (`http`): the signalling and metrics HTTP
/// ports and the control socket, with no thread per connection.
///
/// Every connection has deadlines: its request headers within 5 s, its body within 10 s
/// of them, 30 s in all for what the client controls, and 10 s to take our answer. At most
/// ``maxConnections`` are open (``maxPerSource`` from one address); when full, the
/// connection that has been sending its request longest is dropped for the new one, so
/// slow senders cannot shut real callers out.
public final class SocketServer: @unchecked Sendable {
    public struct Limits: Sendable {
        public var headerTimeout: Duration = .seconds(5)
        public var bodyTimeout: Duration = .seconds(10)
        public var requestTimeout: Duration = .seconds(30)
        public var writeTimeout: Duration = .seconds(10)
        /// How long a handler may take to answer (placing a call waits for the peer).
        public var answerTimeout: Duration = .seconds(60)
        public var maxConnections = 128
        public var maxPerSource = 32
        public init() {}
    }

    enum Kind { case http(HTTPHandler), command(CommandHandler) }

    struct Listener { var fd: Int32; var kind: Kind; var unixPath: String? }

    enum Phase {
        case readingHTTP(HTTPMessageParser)
        case readingCommand([UInt8])
        case waiting
        case writing([UInt8], Int)
    }

    struct Connection {
        var fd: Int32
        var id: UInt64
        var source: String
        var kind: Kind
        var phase: Phase
        var accepted: Instant
        var deadline: Instant
    }

    public let name: String
    public let limits: Limits
    private var listeners: [Listener] = []
    private var connections: [Int32: Connection] = [:]
    private var perSource: [String: Int] = [:]
    private var nextID: UInt64 = 1
    private let outbox = Locked<[(UInt64, [UInt8])]>([])
    private let waker = Waker()
    private let stopping = Locked(false)
    private var thread: pthread_t?
    private var readBuffer = [UInt8](repeating: 0, count: 16384)
    /// Told about refused or timed-out connections (source, what was wrong); rate-limit there.
    public var onRefusal: (@Sendable (String, String) -> Void)?
    /// Counts for status and tests.
    public let counters = Locked(Counters())

    public struct Counters: Sendable {
        public var accepted = 0
        public var served = 0
        public var timedOut = 0
        public var refused = 0
        public var evicted = 0
        public var open = 0
    }

    public init(name: String = "http", limits: Limits = Limits()) {
        self.name = name
        self.limits = limits
    }

    /// Listens for HTTP on `host:port` (port 0: any); returns the port. Call before ``start()``.
    @discardableResult
    public func listenHTTP(host: String, port: UInt16, handler: @escaping HTTPHandler) throws -> UInt16 {
        guard let addr = TransportAddress(host: host, port: port) else { throw HTTPError("listen address \(host) is not numeric") }
        let fd = socket(addr.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard addr.withSockAddr({ bind(fd, $0, $1) }) == 0 else {
            let e = HTTPError("cannot listen on \(addr): \(String(cString: strerror(errno)))")
            close(fd)
            throw e
        }
        guard listen(fd, 128) == 0 else { close(fd); throw HTTPError("listen: \(String(cString: strerror(errno)))") }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listeners.append(Listener(fd: fd, kind: .http(handler), unixPath: nil))
        return withUnsafeBytes(of: &storage) { TransportAddress(storage: $0.baseAddress!)?.port } ?? port
    }

    /// Listens on a Unix stream socket for command lines (mode 0660). Call before ``start()``.
    public func listenCommands(path: String, handler: @escaping CommandHandler) throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw HTTPError("control socket: \(String(cString: strerror(errno)))") }
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else {
            let e = HTTPError("cannot bind control socket \(path): \(String(cString: strerror(errno)))")
            close(fd)
            throw e
        }
        chmod(path, 0o660)
        guard listen(fd, 16) == 0 else { close(fd); throw HTTPError("listen on \(path): \(String(cString: strerror(errno)))") }
        listeners.append(Listener(fd: fd, kind: .command(handler), unixPath: path))
    }

    /// Starts serving on the loop thread.
    public func start() {
        thread = startThread(name: name) { [self] in self.run() }
    }

    /// Stops serving, closes every socket and joins the loop thread.
    public func stop() {
        guard stopping.withLock({ s -> Bool in defer { s = true }; return !s }) else { return }
        waker.wake()
        join(thread)
        thread = nil
    }

    // MARK: The loop

    private func run() {
        var fds: [pollfd] = []
        fds.reserveCapacity(limits.maxConnections + listeners.count + 1)
        var order: [Int32] = []
        while !stopping.current {
            deliverReplies()
            let now = Instant.now()
            expire(now)
            fds.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: -1, events: 0, revents: 0))  // the waker; filled by Waker.wait's own poll below
            for l in listeners { fds.append(pollfd(fd: l.fd, events: Int16(POLLIN), revents: 0)) }
            var nextDeadline: Instant? = nil
            for (fd, c) in connections {
                let events: Int16
                switch c.phase {
                case .readingHTTP, .readingCommand: events = Int16(POLLIN)
                case .writing: events = Int16(POLLOUT)
                case .waiting: events = 0
                }
                fds.append(pollfd(fd: fd, events: events, revents: 0))
                order.append(fd)
                nextDeadline = nextDeadline.map { min($0, c.deadline) } ?? c.deadline
            }
            let timeout = nextDeadline.map { $0 - now } ?? .seconds(60)
            waker.poll(&fds, timeout: timeout)
            if stopping.current { break }
            for (i, l) in listeners.enumerated() where fds[1 + i].revents != 0 { acceptAll(l) }
            for (j, fd) in order.enumerated() {
                let revents = fds[1 + listeners.count + j].revents
                guard revents != 0 else { continue }
                service(fd, revents: revents)
            }
        }
        for fd in Array(connections.keys) { drop(fd) }
        for l in listeners {
            close(l.fd)
            if let p = l.unixPath { unlink(p) }
        }
        listeners.removeAll()
    }

    private func acceptAll(_ l: Listener) {
        while true {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(l.fd, $0, &len) }
            }
            if fd >= 0 {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // EAGAIN, or out of descriptors: poll tells us again
            }
            let source: String
            if l.unixPath != nil { source = "control" } else {
                source = withUnsafeBytes(of: &storage) { TransportAddress(storage: $0.baseAddress!)?.host } ?? "?"
            }
            counters.withLock { $0.accepted += 1 }
            // At a cap, the connection that has been sending its request longest makes room
            // (from the same address first): a slow sender loses its slot, a caller does not.
            if perSource[source, default: 0] >= limits.maxPerSource && !evictOldestReader(from: source, for: source) {
                refuse(fd, source: source, status: 503, reason: "more than \(limits.maxPerSource) connections from one address")
                continue
            }
            if connections.count >= limits.maxConnections && !evictOldestReader(from: nil, for: source) {
                refuse(fd, source: source, status: 503, reason: "more than \(limits.maxConnections) connections")
                continue
            }
            let now = Instant.now()
            var one: Int32 = 1
            if l.unixPath == nil { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
            let phase: Phase
            switch l.kind {
            case .http: phase = .readingHTTP(HTTPMessageParser(isRequest: true))
            case .command: phase = .readingCommand([])
            }
            connections[fd] = Connection(fd: fd, id: nextID, source: source, kind: l.kind, phase: phase,
                                         accepted: now, deadline: now + limits.headerTimeout)
            nextID += 1
            perSource[source, default: 0] += 1
            counters.withLock { $0.open = connections.count }
        }
    }

    /// Makes room by dropping the connection that has been sending its request longest.
    private func evictOldestReader(from: String?, for source: String) -> Bool {
        let victim = connections.values.filter {
            guard from == nil || $0.source == from else { return false }
            switch $0.phase { case .readingHTTP, .readingCommand: return true; default: return false }
        }.min { $0.accepted < $1.accepted }
        guard let victim else { return false }
        onRefusal?(victim.source, "connection dropped to make room for \(source): its request was still incomplete")
        counters.withLock { $0.evicted += 1 }
        drop(victim.fd)
        return true
    }

    /// Answers a connection we will not serve, best effort and without blocking.
    private func refuse(_ fd: Int32, source: String, status: Int, reason: String) {
        counters.withLock { $0.refused += 1 }
        onRefusal?(source, reason)
        let bytes = HTTPServer.encode(HTTPResponse(status: status, contentType: "text/plain", text: reason + "\n", headers: [("Retry-After", "1")]))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        close(fd)
    }

    private func drop(_ fd: Int32) {
        guard let c = connections.removeValue(forKey: fd) else { return }
        close(fd)
        if let n = perSource[c.source], n > 1 { perSource[c.source] = n - 1 } else { perSource[c.source] = nil }
        counters.withLock { $0.open = connections.count }
    }

    private func expire(_ now: Instant) {
        for (fd, c) in connections where c.deadline <= now {
            let what: String
            switch c.phase {
            case .waiting: what = "no answer was ready in time"
            case .readingHTTP(let p): what = p.headersDone ? "request body not received in time" : "request headers not received in time"
            case .readingCommand: what = "command not received in time"
            case .writing: what = "client did not take the response in time"
            }
            counters.withLock { $0.timedOut += 1 }
            onRefusal?(c.source, what)
            if case .waiting = c.phase {
                let bytes = HTTPServer.encode(HTTPResponse(status: 503, contentType: "text/plain", text: what + "\n"))
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            } else if case .readingHTTP = c.phase {
                let bytes = HTTPServer.encode(HTTPResponse(status: 408, contentType: "text/plain", text: what + "\n"))
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            }
            drop(fd)
        }
    }

    private func service(_ fd: Int32, revents: Int16) {
        guard var c = connections[fd] else { return }
        switch c.phase {
        case .waiting:
            // Only errors and hang-ups are polled for; the answer will find the socket gone.
            if revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { drop(fd) }
        case .writing(let bytes, var sent):
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if n <= 0 { drop(fd); return }
            sent += n
            if sent >= bytes.count {
                counters.withLock { $0.served += 1 }
                shutdown(fd, Int32(SHUT_WR))
                drop(fd)
            } else {
                c.phase = .writing(bytes, sent)
                connections[fd] = c
            }
        case .readingHTTP(var parser):
            let n = read(fd, &readBuffer, readBuffer.count)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            let progress = n > 0 ? parser.consume(readBuffer[0..<n]) : parser.finish()
            switch progress {
            case .needMore(let headersDone):
                if headersDone && !(c.phase.headersDone) {
                    c.deadline = min(c.accepted + limits.requestTimeout, Instant.now() + limits.bodyTimeout)
                }
                c.phase = .readingHTTP(parser)
                connections[fd] = c
            case .failed(let f):
                if n == 0 && !parser.headersDone && f.reason.hasPrefix("connection closed before a request") { drop(fd); return }
                onRefusal?(c.source, "bad request: \(f.reason)")
                startWriting(&c, HTTPServer.encode(HTTPResponse(status: f.status, contentType: "text/plain", text: f.reason + "\n")))
            case .complete(let m):
                c.phase = .waiting
                c.deadline = Instant.now() + limits.answerTimeout
                connections[fd] = c
                guard case .http(let handler) = c.kind else { return }
                handler(HTTPRequest(m, peer: c.source), HTTPResponder(reply: responder(for: c.id)))
            }
        case .readingCommand(var line):
            let n = read(fd, &readBuffer, readBuffer.count)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if n > 0 { line += readBuffer[0..<n] }
            if let nl = line.firstIndex(of: 10) ?? (n == 0 ? line.endIndex : nil) {
                c.phase = .waiting
                c.deadline = Instant.now() + limits.answerTimeout
                connections[fd] = c
                guard case .command(let handler) = c.kind else { return }
                handler(String(decoding: line[..<nl], as: UTF8.self), CommandResponder(reply: responder(for: c.id)))
            } else if line.count > 1024 {
                startWriting(&c, Array("error command longer than 1024 bytes\n".utf8))
            } else {
                c.phase = .readingCommand(line)
                connections[fd] = c
            }
        }
    }

    private func startWriting(_ c: inout Connection, _ bytes: [UInt8]) {
        c.phase = .writing(bytes, 0)
        c.deadline = Instant.now() + limits.writeTimeout
        connections[c.fd] = c
        service(c.fd, revents: Int16(POLLOUT))
    }

    private func responder(for id: UInt64) -> @Sendable ([UInt8]) -> Void {
        { [weak self] bytes in
            guard let self else { return }
            self.outbox.withLock { $0.append((id, bytes)) }
            self.waker.wake()
        }
    }

    private func deliverReplies() {
        let replies = outbox.withLock { o -> [(UInt64, [UInt8])] in defer { o.removeAll() }; return o }
        for (id, bytes) in replies {
            // The connection may have gone (client hung up, server stopping): drop the reply.
            guard var c = connections.values.first(where: { $0.id == id }), case .waiting = c.phase else { continue }
            startWriting(&c, bytes)
        }
    }
}

extension SocketServer.Phase {
    var headersDone: Bool {
        if case .readingHTTP(let p) = self { return p.headersDone }
        return true
    }
}
