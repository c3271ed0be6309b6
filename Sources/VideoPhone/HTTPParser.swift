/// An incremental HTTP/1.1 message parser (RFC 9112) for the signalling server and its
/// client: bytes in as they arrive, a message out once it is whole. No I/O and no clock,
/// so the server's poll loop, the client and the fuzzer drive it the same way.
///
/// Only what the device needs: a start line, headers, and a body framed by
/// `Content-Length` (or, for a response without one, by the end of the connection).
/// `Transfer-Encoding` is refused (the signalling bodies are small and sized), as are
/// obsolete line folding and oversized parts; every refusal says what was wrong.
public struct HTTPMessageParser: Sendable {
    /// The limits that keep one connection's memory small.
    public struct Limits: Sendable {
        public var startLine = 8192
        public var headerBytes = 16384
        public var headerCount = 64
        public var body = 256 * 1024
        public init() {}
    }

    /// A refusal: the HTTP status to answer with and why.
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public var status: Int
        public var reason: String
        public var description: String { reason }
    }

    /// A whole message.
    public struct Message: Sendable {
        public var startLine: String
        /// Header names in lower case; a repeated header keeps its first value.
        public var headers: [String: String]
        public var body: [UInt8]
    }

    public enum Progress: Sendable {
        /// More bytes are needed; `headersDone` says whether the body is what is missing.
        case needMore(headersDone: Bool)
        case complete(Message)
        case failed(Failure)
    }

    public let isRequest: Bool
    public let limits: Limits
    private var buffer: [UInt8] = []
    private var head: (startLine: String, headers: [String: String])?
    private var bodyLength: Int?  // nil: until the connection ends (responses only)
    private var failure: Failure?
    private var scanFrom = 0

    public init(isRequest: Bool, limits: Limits = Limits()) {
        self.isRequest = isRequest
        self.limits = limits
    }

    /// Whether the headers have been read.
    public var headersDone: Bool { head != nil }

    /// Takes the next bytes of the connection.
    public mutating func consume(_ bytes: some Collection<UInt8>) -> Progress {
        if let failure { return .failed(failure) }
        buffer.append(contentsOf: bytes)
        return advance(ended: false)
    }

    /// The peer closed its side: a response without a length ends here; anything else
    /// unfinished is an error.
    public mutating func finish() -> Progress {
        if let failure { return .failed(failure) }
        return advance(ended: true)
    }

    private mutating func fail(_ status: Int, _ reason: String) -> Progress {
        let f = Failure(status: status, reason: reason)
        failure = f
        buffer = []
        return .failed(f)
    }

    private mutating func advance(ended: Bool) -> Progress {
        if head == nil {
            guard let end = headerEnd(), end <= limits.headerBytes else {
                // The same verdict however the bytes were split: headers past the limit are
                // refused whether or not their end has arrived yet.
                if buffer.count > limits.headerBytes { return fail(431, "request headers larger than \(limits.headerBytes) bytes") }
                if ended { return fail(400, buffer.isEmpty ? "connection closed before a request" : "connection closed before the headers ended") }
                return .needMore(headersDone: false)
            }
            switch parseHead(buffer[0..<end]) {
            case .failure(let f): return fail(f.status, f.reason)
            case .success(let h): head = h
            }
            buffer.removeFirst(end + 4)
        }
        guard let head else { return .needMore(headersDone: false) }
        if let n = bodyLength {
            if buffer.count < n {
                if ended { return fail(400, "body shorter than Content-Length (\(buffer.count) of \(n) bytes)") }
                return .needMore(headersDone: true)
            }
            // Pipelined bytes after a request are ignored: every connection carries one.
            return .complete(Message(startLine: head.startLine, headers: head.headers, body: Array(buffer[0..<n])))
        }
        if buffer.count > limits.body { return fail(413, "body larger than \(limits.body) bytes") }
        if ended { return .complete(Message(startLine: head.startLine, headers: head.headers, body: buffer)) }
        return .needMore(headersDone: true)
    }

    /// The index of the blank line's CR, if the headers are complete.
    private mutating func headerEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        var i = max(0, scanFrom - 3)
        while i + 3 < buffer.count {
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
            i += 1
        }
        scanFrom = buffer.count
        return nil
    }

    private mutating func parseHead(_ bytes: ArraySlice<UInt8>) -> Result<(startLine: String, headers: [String: String]), Failure> {
        let lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 13 ? line.dropLast() : line
        }
        guard let first = lines.first, !first.isEmpty else { return .failure(Failure(status: 400, reason: "empty start line")) }
        guard first.count <= limits.startLine else { return .failure(Failure(status: 414, reason: "start line longer than \(limits.startLine) bytes")) }
        guard first.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return .failure(Failure(status: 400, reason: "start line has control or non-ASCII bytes")) }
        let startLine = String(decoding: first, as: UTF8.self)
        let parts = startLine.split(separator: " ", omittingEmptySubsequences: false)
        if isRequest {
            guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isUppercase || $0 == "-" }), parts[1].first == "/" || parts[1] == "*" else {
                return .failure(Failure(status: 400, reason: "malformed request line '\(startLine.prefix(80))'"))
            }
            guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
                return .failure(Failure(status: 505, reason: "unsupported version '\(parts[2].prefix(20))'"))
            }
        } else {
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]), (100...599).contains(code) else {
                return .failure(Failure(status: 502, reason: "malformed status line '\(startLine.prefix(80))'"))
            }
        }
        var headers: [String: String] = [:]
        var count = 0
        for line in lines.dropFirst() where !line.isEmpty {
            count += 1
            guard count <= limits.headerCount else { return .failure(Failure(status: 431, reason: "more than \(limits.headerCount) headers")) }
            guard line.first != 32 && line.first != 9 else { return .failure(Failure(status: 400, reason: "obsolete header line folding")) }
            guard let colon = line.firstIndex(of: 58) else {
                return .failure(Failure(status: 400, reason: "header line without a colon: '\(String(decoding: line.prefix(40), as: UTF8.self))'"))
            }
            let nameBytes = line[line.startIndex..<colon]
            guard !nameBytes.isEmpty, nameBytes.allSatisfy(Self.isTokenByte) else {
                return .failure(Failure(status: 400, reason: "malformed header name '\(String(decoding: nameBytes.prefix(40), as: UTF8.self))'"))
            }
            let name = String(decoding: nameBytes, as: UTF8.self).lowercased()
            var valueBytes = line[(colon + 1)...]
            while let f = valueBytes.first, f == 32 || f == 9 { valueBytes = valueBytes.dropFirst() }
            while let l = valueBytes.last, l == 32 || l == 9 { valueBytes = valueBytes.dropLast() }
            let value = String(decoding: valueBytes, as: UTF8.self)
            if headers[name] == nil { headers[name] = value }
        }
        if headers["transfer-encoding"] != nil {
            return .failure(Failure(status: 501, reason: "Transfer-Encoding is not supported; send Content-Length"))
        }
        if let cl = headers["content-length"] {
            guard cl.count <= 12, let n = Int(cl), n >= 0 else { return .failure(Failure(status: 400, reason: "bad Content-Length '\(cl.prefix(20))'")) }
            guard n <= limits.body else { return .failure(Failure(status: 413, reason: "body of \(n) bytes is larger than \(limits.body)")) }
            bodyLength = n
        } else {
            bodyLength = isRequest ? 0 : nil
        }
        return .success((startLine, headers))
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
        default: false
        }
    }
}

extension HTTPRequest {
    /// The request a parsed message carries, from `peer`.
    init(_ m: HTTPMessageParser.Message, peer: String) {
        // The parser checked the request line has three parts; this stays safe regardless.
        let parts = m.startLine.split(separator: " ", maxSplits: 2)
        self.init(method: parts.first.map(String.init) ?? "", path: parts.dropFirst().first.map(String.init) ?? "/",
                  headers: m.headers, body: m.body, peer: peer)
    }
}
