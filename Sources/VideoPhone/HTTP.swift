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

/// A small blocking HTTP/1.1 server: one accept thread, one short-lived thread per
/// connection (bounded), `Connection: close`. Requests are size- and time-limited so a
/// misbehaving client cannot hold the device.
public final class HTTPServer: @unchecked Sendable {
    let listenFD: Int32
    public let port: UInt16
    let handler: @Sendable (HTTPRequest) -> HTTPResponse
    let active = Locked(0)
    let maxConnections = 32
    let maxBody = 256 * 1024
    private let stopping = Locked(false)

    public init(host: String, port: UInt16, handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        guard let addr = TransportAddress(host: host, port: port) else { throw HTTPError("listen address \(host) is not numeric") }
        let fd = socket(addr.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard addr.withSockAddr({ bind(fd, $0, $1) }) == 0 else {
            let e = HTTPError("cannot listen on \(addr): \(String(cString: strerror(errno)))")
            close(fd)
            throw e
        }
        guard listen(fd, 64) == 0 else { close(fd); throw HTTPError("listen: \(String(cString: strerror(errno)))") }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        self.port = withUnsafeBytes(of: &storage) { TransportAddress(storage: $0.baseAddress!)?.port } ?? port
        self.listenFD = fd
        self.handler = handler
        _ = startThread(name: "http-accept") { [self] in self.acceptLoop() }
    }

    public func stop() {
        stopping.withLock { $0 = true }
        shutdown(listenFD, Int32(SHUT_RDWR))
    }

    func acceptLoop() {
        while !stopping.current {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listenFD, $0, &len) } }
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if stopping.current { break }
                usleep(10_000)
                continue
            }
            let peer = withUnsafeBytes(of: &storage) { TransportAddress(storage: $0.baseAddress!)?.host } ?? "?"
            let admitted = active.withLock { n -> Bool in if n >= maxConnections { return false }; n += 1; return true }
            guard admitted else {
                HTTPServer.write(fd, HTTPResponse(status: 503, contentType: "text/plain", text: "busy\n"))
                close(fd)
                continue
            }
            _ = startThread(name: "http-conn") { [self] in
                self.serve(fd, peer: peer)
                close(fd)
                self.active.withLock { $0 -= 1 }
            }
        }
        close(listenFD)
    }

    func serve(_ fd: Int32, peer: String) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        switch HTTPServer.readMessage(fd, maxBody: maxBody, isRequest: true) {
        case .failure(let e):
            HTTPServer.write(fd, HTTPResponse(status: e.status, contentType: "text/plain", text: e.reason + "\n"))
        case .success(let (startLine, headers, body)):
            let parts = startLine.split(separator: " ")
            guard parts.count == 3 else {
                HTTPServer.write(fd, HTTPResponse(status: 400, contentType: "text/plain", text: "malformed request line\n"))
                return
            }
            let req = HTTPRequest(method: String(parts[0]), path: String(parts[1]), headers: headers, body: body, peer: peer)
            HTTPServer.write(fd, handler(req))
        }
    }

    struct ReadError: Error { var status: Int; var reason: String }

    /// Reads a start line, headers and a Content-Length body.
    static func readMessage(_ fd: Int32, maxBody: Int, isRequest: Bool) -> Result<(String, [String: String], [UInt8]), ReadError> {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        var headerEnd: Int? = nil
        while headerEnd == nil {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return .failure(ReadError(status: 400, reason: "connection closed or timed out before the headers ended")) }
            data += chunk[0..<n]
            if let i = findHeaderEnd(data) { headerEnd = i }
            if data.count > 16384 && headerEnd == nil { return .failure(ReadError(status: 413, reason: "headers too large")) }
        }
        let head = String(decoding: data[0..<headerEnd!], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let startLine = lines.removeFirst()
        var headers: [String: String] = [:]
        for l in lines where !l.isEmpty {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = String(Substring(l[l.index(after: colon)...]).trimmed)
        }
        var body = Array(data[(headerEnd! + 4)...])
        let length: Int
        if let cl = headers["content-length"] {
            guard let n = Int(cl), n >= 0 else { return .failure(ReadError(status: 400, reason: "bad Content-Length")) }
            length = n
        } else {
            length = isRequest ? 0 : -1
        }
        if length > maxBody { return .failure(ReadError(status: 413, reason: "body larger than \(maxBody) bytes")) }
        while length < 0 || body.count < length {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 {
                if length < 0 { break }
                return .failure(ReadError(status: 400, reason: "body shorter than Content-Length"))
            }
            body += chunk[0..<n]
            if body.count > maxBody { return .failure(ReadError(status: 413, reason: "body too large")) }
        }
        if length >= 0 && body.count > length { body.removeLast(body.count - length) }
        return .success((startLine, headers, body))
    }

    static func findHeaderEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    static func write(_ fd: Int32, _ r: HTTPResponse) {
        var head = "HTTP/1.1 \(r.status) \(HTTPResponse.reason(r.status))\r\n"
        for (k, v) in r.headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(r.body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + r.body
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}

/// A blocking HTTP/1.1 client for the peer's signalling endpoint (`http://` only).
public enum HTTPClient {
    public static func request(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = [],
                               timeout: Duration = .seconds(5)) throws(HTTPError) -> HTTPResponse {
        guard let u = URLParts(url) else { throw HTTPError("unsupported URL '\(url)' (http://host:port/path)") }
        let fd = try connect(host: u.host, port: u.port, timeout: timeout)
        defer { close(fd) }
        var head = "\(method) \(u.path.isEmpty ? "/" : u.path) HTTP/1.1\r\nHost: \(u.host):\(u.port)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw HTTPError("send to \(u.host):\(u.port) failed: \(String(cString: strerror(errno)))") }
            sent += n
        }
        switch HTTPServer.readMessage(fd, maxBody: 1 << 20, isRequest: false) {
        case .failure(let e): throw HTTPError("reading response from \(u.host):\(u.port): \(e.reason)")
        case .success(let (status, headers, body)):
            let parts = status.split(separator: " ")
            guard parts.count >= 2, let code = Int(parts[1]) else { throw HTTPError("malformed status line '\(status)'") }
            return HTTPResponse(status: code, headers: headers.map { ($0.key, $0.value) }, body: body)
        }
    }

    static func connect(host: String, port: UInt16, timeout: Duration) throws(HTTPError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else { throw HTTPError("cannot resolve '\(host)'") }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var lastError = "no address"
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { continue }
            let secs = timeout.nanosecondsInt / 1_000_000_000
            var tv = timeval(tv_sec: Int(secs), tv_usec: Int((timeout.nanosecondsInt % 1_000_000_000) / 1000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            lastError = String(cString: strerror(errno))
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
