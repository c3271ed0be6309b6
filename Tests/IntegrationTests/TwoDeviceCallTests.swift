import Foundation
import Testing
import NetworkCore
import VideoPhone

/// Every daemon a harness started, killed when the test process exits: a failed
/// expectation may keep its harness (and so its daemons) alive past the test.
private let spawned = Locked<[Int32]>([])
private let killSpawnedAtExit: Void = {
    atexit { for pid in spawned.current { kill(pid, SIGKILL) } }
}()

/// Real `videophoned` processes calling each other over real sockets on loopback.
final class DaemonHarness: @unchecked Sendable {
    let dir: String
    var processes: [String: Process] = [:]
    var ports: [String: UInt16] = [:]
    var logs: [String: String] = [:]

    init() throws {
        dir = NSTemporaryDirectory() + "videophone-it-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    deinit {
        for p in processes.values where p.isRunning { p.terminate(); p.waitUntilExit() }
        // Under `swift test --sanitize=thread` the daemons are instrumented too: a race they
        // reported in their logs fails the test that ran them.
        for (name, path) in logs {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if let r = text.range(of: "WARNING: ThreadSanitizer") {
                Issue.record("\(name): \(text[r.lowerBound...].prefix(4000))")
            }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// How much longer than nominal the tests wait and measure: 1, or more for slow
    /// (sanitized) builds (`VIDEOPHONE_TEST_TIME_SCALE`). Thresholds stay the same except
    /// where they are rates over the longer window.
    static let timeScale: Double = ProcessInfo.processInfo.environment["VIDEOPHONE_TEST_TIME_SCALE"].flatMap(Double.init) ?? 1

    /// Sleeps `seconds` × ``timeScale``.
    func pause(_ seconds: Double) { usleep(UInt32(seconds * DaemonHarness.timeScale * 1_000_000)) }

    static var binary: String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0])
        var dir = testBinary.deletingLastPathComponent()
        // Swift Testing runs from <build>/debug/<Package>PackageTests.xctest (a file on Linux).
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("videophoned").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("videophoned").path
    }


    func port(_ name: String) -> UInt16 {
        if let p = ports[name] { return p }
        let p = freeLoopbackPort()
        ports[name] = p
        return p
    }

    func socketPath(_ name: String) -> String { "\(dir)/\(name).sock" }
    func configPath(_ name: String) -> String { "\(dir)/\(name).toml" }

    /// Writes a config for `name` whose peers point at `peers` (name → URL) and starts it.
    func start(_ name: String, peers: [(String, String, String)], autoAnswer: Bool = true, extra: String = "",
               peerExtra: [String: String] = [:], environment: [String: String] = [:]) throws {
        var toml = """
        [device]
        name = "\(name)"
        state_directory = "\(dir)/\(name)-state"
        auto_answer = \(autoAnswer)

        [signalling]
        listen = "127.0.0.1:\(port(name))"
        token = "\(name)-token"

        [control]
        socket = "\(socketPath(name))"

        [network]
        addresses = ["127.0.0.1"]

        """
        if !extra.contains("[video]") {
            toml += "[video]\nwidth = 640\nheight = 360\nfps = 30\nbitrate_kbps = 800\n"
        }
        toml += extra + "\n"
        for (peer, url, token) in peers {
            toml += "\n[[peer]]\nname = \"\(peer)\"\nurl = \"\(url)\"\ntoken = \"\(token)\"\n" + (peerExtra[peer] ?? "") + "\n"
        }
        let path = "\(dir)/\(name).toml"
        try toml.write(toFile: path, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: DaemonHarness.binary)
        p.arguments = ["--config", path]
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let log = "\(dir)/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = FileHandle.nullDevice
        logs[name] = log
        _ = killSpawnedAtExit
        try p.run()
        spawned.withLock { $0.append(p.processIdentifier) }
        processes[name] = p
        // Ready when the control socket answers.
        for _ in 0..<200 {
            if (try? controlRequest(path: socketPath(name), command: "status")) != nil { return }
            usleep(20_000)
        }
        throw HTTPError("\(name) did not start; log:\n\(self.log(name))")
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: logs[name]!, encoding: .utf8)) ?? "" }

    func control(_ name: String, _ command: String) throws -> String {
        try controlRequest(path: socketPath(name), command: command)
    }

    func status(_ name: String) throws -> [String: Any] {
        // With the device's token: without one, status shows no call details.
        let r = try HTTPClient.request(method: "GET", url: "http://127.0.0.1:\(port(name))/status", headers: [("Authorization", "Bearer \(name)-token")])
        guard r.status == 200, let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            throw HarnessError("GET /status on \(name): \(r.status) \(String(decoding: r.body.prefix(80), as: UTF8.self))")
        }
        return json
    }

    /// Polls until `predicate` holds or `timeout` passes; returns the elapsed seconds or nil.
    func wait(_ timeout: Double, _ predicate: () -> Bool) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout * DaemonHarness.timeScale {
            if predicate() { return Date().timeIntervalSince(start) }
            usleep(10_000)
        }
        return nil
    }
}

func stat(_ s: [String: Any], type: String, kind: String, _ field: String) -> Double {
    let call = s["call"] as? [String: Any] ?? [:]
    let stats = call["stats"] as? [[String: Any]] ?? []
    let entry = stats.first { $0["type"] as? String == type && $0["kind"] as? String == kind }
    return (entry?[field] as? NSNumber)?.doubleValue ?? 0
}

func state(_ s: [String: Any]) -> String { s["state"] as? String ?? "?" }

@Suite(.serialized) struct TwoDeviceCallTests {
    @Test func callBothWaysMediaArrivesAndHangupReachesTheOtherSide() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "a-to-b")], peerExtra: ["b": "accept_token = \"b-to-a\""])
        try h.start("b", peers: [("a", "http://127.0.0.1:\(h.port("a"))", "b-to-a")], peerExtra: ["a": "accept_token = \"a-to-b\""])

        for (caller, callee) in [("a", "b"), ("b", "a")] {
            #expect(try h.control(caller, "call").hasPrefix("ok"))
            let connected = h.wait(5) { (try? h.status(callee)).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 0 } ?? false }
            #expect(connected != nil, "no video at \(callee); logs:\n\(h.log(caller))\n\(h.log(callee))")
            h.pause(3)
            let sc = try h.status(caller), se = try h.status(callee)
            #expect(state(sc) == "in-call" && state(se) == "in-call")
            // Video both ways: ≥ 95 % of frames sent arrive complete.
            for (tx, rx) in [(sc, se), (se, sc)] {
                let sent = stat(tx, type: "outbound-rtp", kind: "video", "framesEncoded")
                let received = stat(rx, type: "inbound-rtp", kind: "video", "framesReceived")
                #expect(sent > 60)
                #expect(received >= 0.95 * sent - 2, "sent \(sent) frames, \(received) arrived")
                let audioSent = stat(tx, type: "outbound-rtp", kind: "audio", "packetsSent")
                let decoded = stat(rx, type: "inbound-rtp", kind: "audio", "packetsDecoded")
                // The jitter buffer drops what piled up before the speaker started (latency
                // over completeness) and holds a few packets: the rest must all decode.
                let discarded = stat(rx, type: "inbound-rtp", kind: "audio", "packetsDiscarded")
                #expect(audioSent > 100)
                #expect(decoded + discarded >= 0.95 * audioSent - 5, "sent \(audioSent) audio packets, \(decoded) decoded, \(discarded) discarded")
                // A latency figure of real-time playout: judged where the build keeps real
                // time (not under a sanitizer on a loaded machine, where the speaker starts late).
                if DaemonHarness.timeScale == 1 { #expect(discarded <= 15, "\(discarded) packets discarded on loopback") }
            }
            // Hang up from the caller; the callee learns within 1 s.
            #expect(try h.control(caller, "hangup").hasPrefix("ok"))
            let ended = h.wait(1.0) { (try? h.status(callee)).map { state($0) == "idle" } ?? false }
            #expect(ended != nil, "\(callee) still in a call 1 s after \(caller) hung up")
        }
        // And a hang-up from the callee side reaches the caller too.
        #expect(try h.control("a", "call").hasPrefix("ok"))
        _ = h.wait(5) { (try? h.status("a")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 0 } ?? false }
        #expect(try h.control("b", "hangup").hasPrefix("ok"))
        #expect(h.wait(1.0) { (try? h.status("a")).map { state($0) == "idle" } ?? false } != nil)
    }

    @Test func garbageOnTheMediaPortIsCountedAndTheCallKeepsFlowing() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")])
        try h.start("b", peers: [])
        #expect(try h.control("a", "call").hasPrefix("ok"))
        #expect(h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 0 } ?? false } != nil)
        let s = try h.status("b")
        let pair = ((s["call"] as! [String: Any])["stats"] as! [[String: Any]]).first { $0["type"] as? String == "candidate-pair" }!
        let local = pair["localAddress"] as! String
        let port = UInt16(local.split(separator: ":").last!)!
        // Datagrams of every kind the demultiplexer sees: junk, fake STUN, fake DTLS, fake RTP and RTCP.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let junk: [[UInt8]] = [[0xFF, 1, 2], [0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42] + Array(repeating: 7, count: 20),
                               [22, 0xfe, 0xfd, 1, 2, 3], [0x80, 102, 0, 1] + Array(repeating: 9, count: 40),
                               [0x81, 200, 0, 1, 2, 3, 4, 5], [], [0x80]]
        for _ in 0..<50 {
            for j in junk {
                _ = j.withUnsafeBytes { b in withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } }
            }
        }
        let before = stat(try h.status("b"), type: "inbound-rtp", kind: "video", "framesReceived")
        h.pause(1)
        let after = try h.status("b")
        #expect(stat(after, type: "inbound-rtp", kind: "video", "framesReceived") > before + 20, "video stalled after garbage")
        let call = after["call"] as! [String: Any]
        let dropped = (call["malformedDatagrams"] as! NSNumber).intValue + (call["srtpFailures"] as! NSNumber).intValue
        #expect(dropped >= 200)
        #expect(h.processes["b"]!.isRunning)
    }

    @Test func badRequestsGetClearErrors() throws {
        let h = try DaemonHarness()
        try h.start("b", peers: [])
        let url = "http://127.0.0.1:\(h.port("b"))/call"
        let noToken = try HTTPClient.request(method: "POST", url: url, headers: [("Content-Type", "application/sdp")], body: Array("v=0".utf8))
        #expect(noToken.status == 401)
        let wrongType = try HTTPClient.request(method: "POST", url: url, headers: [("Content-Type", "text/plain"), ("Authorization", "Bearer b-token")], body: Array("v=0".utf8))
        #expect(wrongType.status == 415)
        let garbage = try HTTPClient.request(method: "POST", url: url, headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer b-token")],
                                             body: Array("v=0\r\nnonsense here\r\n".utf8))
        #expect(garbage.status == 400)
        #expect(garbage.bodyText.contains("SDP line 2"))
        let vp8Only = """
        v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\na=setup:actpass\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n
        """
        let r = try HTTPClient.request(method: "POST", url: url, headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer b-token")], body: Array(vp8Only.utf8))
        #expect(r.status == 400)
        #expect(r.bodyText.contains("no usable codec"))
        #expect(state(try h.status("b")) == "idle")
        #expect(h.processes["b"]!.isRunning)
    }

    /// A man in the middle swaps the fingerprint in the offer: the callee's DTLS handshake
    /// fails, no media flows, and the reason is logged.
    @Test func aPeerWhoseCertificateDoesNotMatchItsFingerprintGetsNoMedia() throws {
        let h = try DaemonHarness()
        let proxyPort = freeLoopbackPort()
        let bPort = h.port("b")
        let proxy = try HTTPServer(host: "127.0.0.1", port: proxyPort) { req in
            var body = req.bodyText
            if req.method == "POST", let r = body.range(of: "a=fingerprint:sha-256 ") {
                let start = r.upperBound
                let end = body.index(start, offsetBy: 2)
                body.replaceSubrange(start..<end, with: body[start..<end] == "00" ? "11" : "00")
            }
            var headers: [(String, String)] = []
            for k in ["content-type", "authorization"] { if let v = req.header(k) { headers.append((k, v)) } }
            let r = (try? HTTPClient.request(method: req.method, url: "http://127.0.0.1:\(bPort)\(req.path)", headers: headers, body: Array(body.utf8)))
            return r ?? HTTPResponse(status: 502)
        }
        defer { proxy.stop() }
        try h.start("a", peers: [("b", "http://127.0.0.1:\(proxyPort)", "b-token")])
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        defer { if !(h.processes["a"]!.isRunning && h.processes["b"]!.isRunning) { print("LOG a:\n\(h.log("a"))\nLOG b:\n\(h.log("b"))") } }
        let logged = h.wait(5) { h.log("b").contains("does not match") }
        #expect(logged != nil, "b did not log the fingerprint mismatch:\n\(h.log("b"))")
        h.pause(1)
        let sa = try h.status("a")
        #expect(stat(sa, type: "inbound-rtp", kind: "video", "framesReceived") == 0)
        #expect(stat(try h.status("b"), type: "inbound-rtp", kind: "video", "framesReceived") == 0)
    }
}

/// A harness request that got an answer other than the one the test needs.
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
