import Foundation
import NetworkCore
import Testing
@testable import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HTTPMessageParserTests {
    @Test func aRequestInOnePiece() throws {
        var p = HTTPMessageParser(isRequest: true)
        let text = "POST /call HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0"
        guard case .complete(let m) = p.consume(Array(text.utf8)) else { Issue.record("not complete"); return }
        #expect(m.startLine == "POST /call HTTP/1.1")
        #expect(m.headers["content-type"] == "application/sdp")
        #expect(m.body == Array("v=0".utf8))
    }

    /// One byte at a time, as a slow client sends it: the same message comes out.
    @Test func byteByByte() {
        var p = HTTPMessageParser(isRequest: true)
        let text = Array("PATCH /call/ab HTTP/1.1\r\nContent-Length: 5\r\nX:  padded \r\n\r\nhello".utf8)
        var result: HTTPMessageParser.Progress = .needMore(headersDone: false)
        for b in text { result = p.consume([b]) }
        guard case .complete(let m) = result else { Issue.record("not complete"); return }
        #expect(m.body == Array("hello".utf8))
        #expect(m.headers["x"] == "padded")
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\n\r\n", 505),
        ("get / HTTP/1.1\r\n\r\n", 400),
        ("GET nopath HTTP/1.1\r\n\r\n", 400),
        ("POST /call HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST /call HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        ("POST /call HTTP/1.1\r\nContent-Length: 300000\r\n\r\n", 413),
        ("POST /call HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        ("GET /\u{1} HTTP/1.1\r\n\r\n", 400),
    ])
    func refusals(text: String, status: Int) {
        var p = HTTPMessageParser(isRequest: true)
        guard case .failed(let f) = p.consume(Array(text.utf8)) else { Issue.record("accepted: \(text)"); return }
        #expect(f.status == status)
        #expect(!f.reason.isEmpty)
    }

    @Test func headersThatNeverEndAreCapped() {
        var p = HTTPMessageParser(isRequest: true)
        _ = p.consume(Array("GET / HTTP/1.1\r\n".utf8))
        var last: HTTPMessageParser.Progress = .needMore(headersDone: false)
        for _ in 0..<2000 { last = p.consume(Array("X-Filler: aaaaaaaa\r\n".utf8)) }
        guard case .failed(let f) = last else { Issue.record("no refusal"); return }
        #expect(f.status == 431)
    }

    @Test func aResponseWithoutLengthEndsWithTheConnection() {
        var p = HTTPMessageParser(isRequest: false)
        guard case .needMore(true) = p.consume(Array("HTTP/1.1 200 OK\r\n\r\nabc".utf8)) else { Issue.record("expected more"); return }
        guard case .complete(let m) = p.finish() else { Issue.record("not complete"); return }
        #expect(m.body == Array("abc".utf8))
    }

    @Test func aShortBodyAtCloseIsAnError() {
        var p = HTTPMessageParser(isRequest: true)
        _ = p.consume(Array("POST /call HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".utf8))
        guard case .failed(let f) = p.finish() else { Issue.record("accepted"); return }
        #expect(f.reason.contains("shorter"))
    }
}

@Suite struct TrickleFragmentTests {
    @Test func candidatesAndCredentials() throws {
        let text = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
        let f = try TrickleFragment.parse(text, maxCandidates: 5).get()
        #expect(f.ufrag == "abcd")
        #expect(f.candidates == ["candidate:1 1 udp 1 10.0.0.1 5000 typ host"])
        #expect(f.endOfCandidates)
    }

    @Test(arguments: [
        "a=ice-ufrag:abcd\r\n",
        "a=ice-ufrag:ab\r\na=ice-pwd:0123456789012345678901\r\n",
        String(repeating: "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n", count: 6),
    ])
    func refusals(text: String) {
        #expect((try? TrickleFragment.parse(text, maxCandidates: 5).get()) == nil)
    }
}

@Suite struct ControlCommandTests {
    @Test(arguments: [
        ("status", ControlCommands.Command.status(json: false)),
        ("status --json", .status(json: true)),
        ("call", .call(peer: nil)),
        ("call grandma", .call(peer: "grandma")),
        ("press --long", .press(long: true)),
        ("hangup", .hangup),
    ])
    func parses(line: String, command: ControlCommands.Command) throws {
        #expect(try ControlCommands.parse(line).get() == command)
    }

    @Test(arguments: ["", "call a b", "press --short", "hangup now", "reboot", "status --xml"])
    func refuses(line: String) {
        #expect((try? ControlCommands.parse(line).get()) == nil)
    }
}

@Suite struct RateLimiterTests {
    @Test func theTableStaysBounded() {
        let r = RateLimiter(maxSources: 64)
        let t0 = Instant(nanoseconds: 1_000_000_000)
        for i in 0..<10_000 { _ = r.allow(source: "10.0.\(i / 256).\(i % 256)", now: t0) }
        #expect(r.sourceCount <= 64)
    }

    @Test func aFloodFromOneSourceIsRefusedAndGETsCostLess() {
        let r = RateLimiter(rate: 10, burst: 20)
        let t0 = Instant(nanoseconds: 1_000_000_000)
        let posts = (0..<100).filter { _ in r.allow(source: "a", now: t0) }.count
        #expect(posts == 20)
        let gets = (0..<1000).filter { _ in r.allow(source: "b", cost: 0.1, now: t0) }.count
        #expect(gets == 200)
    }
}

@Suite struct SerialQueueTests {
    @Test func runsInOrderOnItsOwnThreadAndTimersFire() {
        let q = SerialQueue(name: "test-queue", capacity: 1000)
        let seen = Locked<[Int]>([])
        for i in 0..<100 { q.async { seen.withLock { $0.append(i) } } }
        let fired = Semaphore()
        q.after(.milliseconds(20)) { fired.signal() }
        fired.wait()
        #expect(seen.current == Array(0..<100))
        #expect(q.sync { q.isCurrent })
        #expect(!q.isCurrent)
        q.stop()
    }

    @Test func aFullQueueRefusesWork() {
        let q = SerialQueue(name: "test-full", capacity: 4)
        let gate = Semaphore(), started = Semaphore()
        q.async { started.signal(); gate.wait() }
        started.wait()
        let accepted = (0..<10).filter { _ in q.async {} }.count
        #expect(accepted == 4)
        gate.signal()
        q.stop()
    }
}

/// The server loop over real sockets on loopback, with short deadlines.
@Suite(.serialized) struct SocketServerTests {
    func connect(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let addr = TransportAddress(host: "127.0.0.1", port: port)!
        _ = addr.withSockAddr { Glibc.connect(fd, $0, $1) }
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    func readAll(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func slowHeadersTimeOutAndOthersAreServedMeanwhile() throws {
        var limits = SocketServer.Limits()
        limits.headerTimeout = .milliseconds(300)
        let server = SocketServer(name: "test-http", limits: limits)
        let port = try server.listenHTTP(host: "127.0.0.1", port: 0) { _, r in r.respond(HTTPResponse(status: 200, contentType: "text/plain", text: "hi\n")) }
        server.start()
        defer { server.stop() }
        let slow = (0..<10).map { _ in connect(port) }
        for fd in slow { _ = Array("GET / HT".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }
        let fast = connect(port)
        _ = Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { send(fast, $0.baseAddress, $0.count, 0) }
        #expect(readAll(fast).hasPrefix("HTTP/1.1 200"))
        close(fast)
        // The slow ones get 408 once their header deadline passes.
        for fd in slow {
            #expect(readAll(fd).hasPrefix("HTTP/1.1 408"))
            close(fd)
        }
        // The loop counts just after it answers: give it a moment.
        for _ in 0..<100 where server.counters.current.open > 0 { usleep(10_000) }
        #expect(server.counters.current.timedOut == 10)
        #expect(server.counters.current.open == 0)
    }

    @Test func aFullServerDropsTheOldestIncompleteRequestForANewCaller() throws {
        var limits = SocketServer.Limits()
        limits.maxConnections = 4
        limits.maxPerSource = 4
        let server = SocketServer(name: "test-cap", limits: limits)
        let port = try server.listenHTTP(host: "127.0.0.1", port: 0) { _, r in r.respond(HTTPResponse(status: 200)) }
        server.start()
        defer { server.stop() }
        let slow = (0..<4).map { _ in connect(port) }
        usleep(50_000)
        let caller = connect(port)
        _ = Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { send(caller, $0.baseAddress, $0.count, 0) }
        #expect(readAll(caller).hasPrefix("HTTP/1.1 200"))
        close(caller)
        #expect(server.counters.current.evicted >= 1)
        for fd in slow { close(fd) }
    }

    @Test func answersMayComeLaterFromAnotherThread() throws {
        let q = SerialQueue(name: "test-later")
        let server = SocketServer(name: "test-async")
        let port = try server.listenHTTP(host: "127.0.0.1", port: 0) { req, r in
            q.after(.milliseconds(50)) { r.respond(HTTPResponse(status: 201, contentType: "text/plain", text: req.path)) }
        }
        server.start()
        defer { server.stop(); q.stop() }
        let fds = (0..<5).map { _ in connect(port) }
        for (i, fd) in fds.enumerated() { _ = Array("GET /n\(i) HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }
        for (i, fd) in fds.enumerated() {
            let text = readAll(fd)
            #expect(text.hasPrefix("HTTP/1.1 201"))
            #expect(text.hasSuffix("/n\(i)"))
            close(fd)
        }
    }

    @Test func commandsOnAUnixSocket() throws {
        let path = NSTemporaryDirectory() + "vp-ctl-\(getpid()).sock"
        let server = SocketServer(name: "test-ctl")
        try server.listenCommands(path: path) { line, r in r.respond("ok \(line)\n") }
        server.start()
        defer { server.stop() }
        #expect(try controlRequest(path: path, command: "status --json") == "ok status --json\n")
    }
}

@Suite struct MalformedTrickleTests {
    /// What a token holder might send in a PATCH: each is refused, with what was wrong.
    @Test(arguments: [
        "hello, this is not SDP\r\n",
        "a=candidate:foo\r\n",
        "a=candidate:1 1 udp 100 10.0.0.1 99999 typ host\r\n",
        "a=candidate:1 1 udp 100 999.1.1.1 5000 typ host\r\n",
        "a=candidate:1 1 udp -5 10.0.0.1 5000 typ host\r\n",
        "a=candidate:1 0 udp 100 10.0.0.1 5000 typ host\r\n",
        "a=candidate:1 1 udp 100 10.0.0.1 5000 typ bogus\r\n",
        "a=candidate:1 1 sctp 100 10.0.0.1 5000 typ host\r\n",
        "\u{1}\u{2}\u{ff}binary\r\n",
        "a=ice-ufrag:ab\u{0}cd\r\na=ice-pwd:0123456789012345678901\r\n",
    ])
    func refused(body: String) {
        #expect((try? TrickleFragment.parse(body, maxCandidates: 40).get()) == nil)
    }

    @Test func anRFC8840FragmentIsTaken() throws {
        let body = "a=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 abcd-ef.local 5000 typ host\r\na=end-of-candidates\r\n"
        let f = try TrickleFragment.parse(body, maxCandidates: 40).get()
        #expect(f.candidates.count == 1)
        #expect(f.endOfCandidates)
    }
}
