import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// The local control socket `videophonectl` talks to: a Unix stream socket, one command
/// line per connection, a reply, then close. Mode 0660: root and the service's group.
public final class ControlServer: @unchecked Sendable {
    let fd: Int32
    public let path: String
    let device: Device

    public init(path: String, device: Device) throws {
        self.path = path
        self.device = device
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPError("control socket: \(String(cString: strerror(errno)))") }
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else {
            let e = HTTPError("cannot bind control socket \(path): \(String(cString: strerror(errno)))")
            close(fd)
            throw e
        }
        chmod(path, 0o660)
        listen(fd, 8)
        self.fd = fd
        _ = startThread(name: "control") { [self] in self.loop() }
    }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        unlink(path)
    }

    func loop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue } else { break } }
            _ = startThread(name: "control-conn") { [self] in
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var buf = [UInt8](repeating: 0, count: 1024)
                let n = read(c, &buf, buf.count)
                let line = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "" : ""
                let reply = self.execute(line)
                let bytes = Array(reply.utf8)
                _ = bytes.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(c)
            }
        }
    }

    /// Runs one command; the reply starts with `ok` or `error`.
    func execute(_ line: String) -> String {
        let words = line.split(separator: " ").map(String.init)
        switch words.first ?? "" {
        case "status":
            if words.contains("--json") { return "ok\n" + device.statusJSON() + "\n" }
            return "ok\n" + device.statusText()
        case "call":
            do { try device.placeCall(to: words.count > 1 ? words[1] : nil); return "ok calling\n" }
            catch { return "error \(error.description)\n" }
        case "answer":
            do { try device.answer(); return "ok answered\n" } catch { return "error \(error.description)\n" }
        case "hangup":
            return device.hangup() ? "ok hung up\n" : "error no call to hang up\n"
        case "press":
            return "ok \(device.press(long: words.contains("--long")))\n"
        case "identity":
            return "ok\nsha-256 \(device.identity.fingerprint)\n"
        default:
            return "error unknown command '\(line.prefix(40))' (status, call [PEER], answer, hangup, press [--long], identity)\n"
        }
    }
}

/// Sends one command to the control socket and returns the reply.
public func controlRequest(path: String, command: String, timeout: Int = 15) throws(HTTPError) -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
        throw HTTPError("cannot connect to \(path): \(String(cString: strerror(errno))) (is videophoned running?)")
    }
    let bytes = Array((command + "\n").utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8.prefix(107))
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// Writes to standard error (unbuffered, no shared C `FILE`).
public func printError(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
