import Display
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// The local control socket `videophonectl` talks to: a Unix stream socket (mode 0660:
/// root and the service's group), one command line per connection, a reply, then close.
/// Served by the daemon's ``SocketServer``; commands that change the call go through call
/// control and reply when it is done.
public enum ControlCommands {
    /// What the control socket understands, for errors and `--help`.
    public static let summary = "status [--json], call [PEER], answer, hangup, press [--long], identity, reload, screenshot"

    /// A parsed command line. No I/O; the fuzzer drives it.
    public enum Command: Equatable, Sendable {
        case status(json: Bool)
        case call(peer: String?)
        case answer, hangup, identity
        /// Re-read the config file and its drop-ins, as SIGHUP does.
        case reload
        case press(long: Bool)
        /// What the screen shows, as PNG (base64url in the reply; videophonectl writes the file).
        case screenshot
    }

    /// Reads one command line; the error names what was wrong.
    public static func parse(_ line: String) -> Result<Command, HTTPError> {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let verb = words.first else { return .failure(HTTPError("empty command (\(summary))")) }
        let rest = Array(words.dropFirst())
        func noArguments(_ c: Command) -> Result<Command, HTTPError> {
            rest.isEmpty ? .success(c) : .failure(HTTPError("'\(verb)' takes no arguments, got '\(rest.joined(separator: " ").prefix(40))'"))
        }
        switch verb {
        case "status":
            guard rest.allSatisfy({ $0 == "--json" }) else { return .failure(HTTPError("status takes only --json")) }
            return .success(.status(json: !rest.isEmpty))
        case "call":
            guard rest.count <= 1 else { return .failure(HTTPError("call takes at most one peer name")) }
            return .success(.call(peer: rest.first))
        case "answer": return noArguments(.answer)
        case "hangup": return noArguments(.hangup)
        case "identity": return noArguments(.identity)
        case "reload": return noArguments(.reload)
        case "screenshot": return noArguments(.screenshot)
        case "press":
            guard rest.allSatisfy({ $0 == "--long" }) else { return .failure(HTTPError("press takes only --long")) }
            return .success(.press(long: !rest.isEmpty))
        default:
            return .failure(HTTPError("unknown command '\(line.prefix(40))' (\(summary))"))
        }
    }

    /// Runs one command line for `device`; the reply starts with `ok` or `error`.
    public static func execute(_ line: String, device: Device, reload: (@Sendable () -> String)? = nil, _ responder: CommandResponder) {
        switch parse(line) {
        case .failure(let e):
            responder.respond("error \(e.description)\n")
        case .success(.status(let json)):
            responder.respond(json ? "ok\n" + device.statusJSON() + "\n" : "ok\n" + device.statusText())
        case .success(.call(let peer)):
            device.placeCall(to: peer) { failure in responder.respond(failure.map { "error \($0)\n" } ?? "ok calling\n") }
        case .success(.answer):
            device.answer { failure in responder.respond(failure.map { "error \($0)\n" } ?? "ok answered\n") }
        case .success(.hangup):
            device.hangup(reason: .localHangup) { had in responder.respond(had ? "ok hung up\n" : "error no call to hang up\n") }
        case .success(.press(let long)):
            device.press(long: long) { result in responder.respond("ok \(result)\n") }
        case .success(.identity):
            responder.respond("ok\nsha-256 \(device.identity.fingerprint)\n")
        case .success(.screenshot):
            guard let screen = device.screen else {
                responder.respond("error this device has no screen ([display] output = \"\(device.config.displayOutput)\")\n")
                return
            }
            let fb = screen.snapshot()
            responder.respond("ok png \(fb.width)x\(fb.height) \(Base64URL.encode(PNGWriter.encode(fb)))\n")
        case .success(.reload):
            responder.respond(reload?() ?? "error this daemon was started without a config file to reload\n")
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
