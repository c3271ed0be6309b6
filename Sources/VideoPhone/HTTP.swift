import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 request as the signalling server sees it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: [UInt8]
    public var peer: String

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// An HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status; self.headers = headers; self.body = body
    }

    public init(status: Int, contentType: String, text: String, headers: [(String, String)] = []) {
        self.status = status
        self.headers = [("Content-Type", contentType)] + headers
        self.body = Array(text.utf8)
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"; case 201: "Created"; case 204: "No Content"; case 400: "Bad Request"
        case 401: "Unauthorized"; case 404: "Not Found"; case 405: "Method Not Allowed"; case 409: "Conflict"
        case 413: "Payload Too Large"; case 415: "Unsupported Media Type"; case 429: "Too Many Requests"
        case 500: "Internal Server Error"; case 503: "Service Unavailable"; default: "Status"
        }
    }
}

public struct HTTPError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One HTTP port served on its own ``SocketServer`` loop with a synchronous handler (tests,
/// proxies). The daemon puts all its ports on one loop instead (``Daemon``).
public final class HTTPServer: @unchecked Sendable {
    public let port: UInt16
    let server: SocketServer

    public init(host: String, port: UInt16, name: String = "http", handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        server = SocketServer(name: name)
        self.port = try server.listenHTTP(host: host, port: port) { req, responder in responder.respond(handler(req)) }
        server.start()
    }

    public func stop() { server.stop() }

    /// The bytes of a response, `Connection: close`.
    static func encode(_ r: HTTPResponse) -> [UInt8] {
        var head = "HTTP/1.1 \(r.status) \(HTTPResponse.reason(r.status))\r\n"
        for (k, v) in r.headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(r.body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + r.body
    }
}

/// A blocking HTTP/1.1 client for the peer's signalling endpoint (`http://` only). Each
/// request has one overall deadline, connection set-up included, so a peer that accepts
/// and then says nothing cannot hold the caller longer than `timeout`.
public enum HTTPClient {
    public static func request(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = [],
                               timeout: Duration = .seconds(5)) throws(HTTPError) -> HTTPResponse {
        guard let u = URLParts(url) else { throw HTTPError("unsupported URL '\(url)' (http://host:port/path)") }
        let deadline = Instant.now() + timeout
        let fd = try connect(host: u.host, port: u.port, deadline: deadline)
        defer { close(fd) }
        var head = "\(method) \(u.path.isEmpty ? "/" : u.path) HTTP/1.1\r\nHost: \(u.host):\(u.port)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { throw HTTPError("sending to \(u.host):\(u.port) timed out") }
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n <= 0 { throw HTTPError("send to \(u.host):\(u.port) failed: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var limits = HTTPMessageParser.Limits()
        limits.body = 1 << 20
        var parser = HTTPMessageParser(isRequest: false, limits: limits)
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { throw HTTPError("no response from \(u.host):\(u.port) within \(Int(timeout.seconds * 1000)) ms") }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            switch n > 0 ? parser.consume(chunk[0..<n]) : parser.finish() {
            case .needMore:
                if n <= 0 { throw HTTPError("connection to \(u.host):\(u.port) closed early") }
            case .failed(let f):
                throw HTTPError("reading response from \(u.host):\(u.port): \(f.reason)")
            case .complete(let m):
                let parts = m.startLine.split(separator: " ")
                guard parts.count >= 2, let code = Int(parts[1]) else { throw HTTPError("malformed status line '\(m.startLine.prefix(80))'") }
                return HTTPResponse(status: code, headers: m.headers.map { ($0.key, $0.value) }, body: m.body)
            }
        }
    }

    /// Waits until `fd` is ready for `events` or the deadline passes.
    static func wait(_ fd: Int32, for events: Int16, until deadline: Instant) -> Bool {
        while true {
            let left = deadline - Instant.now()
            guard left > .zero else { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(clamping: Int64(left.milliseconds.rounded(.up))))
            if r > 0 { return true }
            if r < 0 && errno == EINTR { continue }
            if r == 0 { return false }
            return true  // an error: the next call on the socket reports it
        }
    }

    static func connect(host: String, port: UInt16, deadline: Instant) throws(HTTPError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        // Numeric hosts only: a name lookup would block past the deadline.
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>? = nil
        if getaddrinfo(host, String(port), &hints, &res) != 0 {
            hints.ai_flags = AI_NUMERICSERV
            guard getaddrinfo(host, String(port), &hints, &res) == 0 else { throw HTTPError("cannot resolve '\(host)'") }
        }
        guard let first = res else { throw HTTPError("cannot resolve '\(host)'") }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var lastError = "no address"
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { continue }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            if errno == EINPROGRESS && wait(fd, for: Int16(POLLOUT), until: deadline) {
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err == 0 { return fd }
                lastError = String(cString: strerror(err))
            } else {
                lastError = errno == EINPROGRESS ? "timed out" : String(cString: strerror(errno))
            }
            close(fd)
        }
        throw HTTPError("cannot connect to \(host):\(port): \(lastError)")
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (tests and benchmarks pick their
/// signalling ports with it).
public func freeLoopbackPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let any = TransportAddress(host: "127.0.0.1", port: 0)!
    _ = any.withSockAddr { bind(fd, $0, $1) }
    var storage = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return withUnsafeBytes(of: &storage) { TransportAddress(storage: $0.baseAddress!)?.port } ?? 0
}
