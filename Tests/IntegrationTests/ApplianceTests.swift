import Foundation
import Testing
import NetworkCore
import VideoPhone
import CallControl
import BuildInfo

/// A Unix datagram socket a test listens on, standing in for systemd's notify socket or
/// the journal's socket.
final class DatagramListener: @unchecked Sendable {
    let path: String
    let fd: Int32
    private let received = NSLock()
    private var messages: [[UInt8]] = []

    init(path: String) {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        let t = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { return }
                received.lock(); messages.append(Array(buf[0..<n])); received.unlock()
            }
        }
        t.start()
    }

    deinit { shutdown(fd, Int32(SHUT_RDWR)); close(fd); unlink(path) }

    var texts: [String] { received.lock(); defer { received.unlock() }; return messages.map { String(decoding: $0, as: UTF8.self) } }

    /// Journal entries as field dictionaries (text form; binary-safe values are rare here).
    var entries: [[String: String]] {
        texts.map { t in
            var d: [String: String] = [:]
            for line in t.split(separator: "\n") {
                if let eq = line.firstIndex(of: "=") { d[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
            }
            return d
        }
    }
}

/// Runs a tool to completion; returns its exit status and everything it printed.
func runTool(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, text)
}

@Suite(.serialized) struct ApplianceTests {
    @Test func sdNotifyReadyStatusWatchdogAndStoppingWithTheCallEndedCleanly() throws {
        let h = try DaemonHarness()
        let notify = DatagramListener(path: h.dir + "/notify.sock")
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")],
                    environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        try h.start("b", peers: [])
        #expect(h.wait(3) { notify.texts.contains { $0.contains("READY=1") } } != nil)
        #expect(h.wait(3) { notify.texts.filter { $0 == "WATCHDOG=1" }.count >= 2 } != nil, "watchdog not fed: \(notify.texts)")
        #expect(try h.control("a", "call").hasPrefix("ok"))
        #expect(h.wait(5) { notify.texts.contains("STATUS=in-call") } != nil, "\(notify.texts)")
        // SIGTERM in a call: the peer is told, the daemon says STOPPING.
        h.processes["a"]!.terminate()
        #expect(h.wait(1.0) { (try? h.status("b")).map { state($0) == "idle" } ?? false } != nil, "b did not learn that a stopped")
        #expect(h.wait(3) { notify.texts.contains("STOPPING=1") } != nil)
        h.processes["a"]!.waitUntilExit()
        #expect(h.processes["a"]!.terminationStatus == 0)
    }

    @Test func journalEntriesCarryCallFields() throws {
        let h = try DaemonHarness()
        let journal = DatagramListener(path: h.dir + "/journal.sock")
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")], environment: ["VIDEOPHONE_JOURNAL_SOCKET": journal.path])
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        // Hung up once in the call (a hang-up while calling is logged as "cancelled").
        #expect(h.wait(10) { (try? h.status("a")).map { state($0) == "in-call" } ?? false } != nil)
        _ = try h.control("a", "hangup")
        let ended = h.wait(3) { journal.entries.contains { $0["MESSAGE"] == "call ended" } }
        #expect(ended != nil, "\(journal.texts)")
        let entry = try #require(journal.entries.first { $0["MESSAGE"] == "call ended" })
        #expect(entry["PRIORITY"] == "6")
        #expect(entry["SYSLOG_IDENTIFIER"] == "videophoned")
        #expect(entry["CALL_ID"]?.count == 32)
        #expect(entry["PEER"] == "b")
        #expect(entry["STATE"] == "idle")
        #expect(entry["REASON"] == "local hangup")
        // Secrets never reach the journal.
        #expect(!journal.texts.contains { $0.contains("b-token") || $0.contains("a-token") })
    }

    @Test func metricsPassPromtool() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")], extra: "[metrics]\nlisten = \"127.0.0.1:\(h.port("a-metrics"))\"")
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        _ = h.wait(5) { (try? h.status("a")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 30 } ?? false }
        h.pause(2)
        let r = try HTTPClient.request(method: "GET", url: "http://127.0.0.1:\(h.port("a-metrics"))/metrics")
        #expect(r.status == 200)
        let text = r.bodyText
        for name in ["videophone_calls_total", "videophone_call_setup_seconds", "videophone_round_trip_time_seconds", "videophone_jitter_seconds",
                     "videophone_packets_lost", "videophone_media_rate_bytes_per_second", "videophone_frames_per_second", "videophone_encode_seconds",
                     "videophone_capture_to_wire_seconds", "videophone_ice_selected_pairs_total", "process_cpu_seconds_total", "process_resident_memory_bytes",
                     "videophone_target_media_rate_bytes_per_second", "videophone_jitter_buffer_delay_seconds", "videophone_audio_concealed_samples",
                     "videophone_sound_xruns", "videophone_device_fault{part=\"camera\"} 0",
                     "videophone_echo_return_loss_enhancement_decibels", "videophone_echo_delay_estimated_seconds",
                     "videophone_residual_echo_likelihood", "videophone_audio_processing_frame_time_median_seconds",
                     "videophone_audio_processing_enabled{stage=\"echo_cancellation\"} 0", "videophone_audio_processing_fault 0"]
            where name != "videophone_calls_total" && name != "videophone_call_setup_seconds" {
            #expect(text.contains(name), "\(name) missing from /metrics")
        }
        _ = try h.control("a", "hangup")
        h.pause(1)
        let after = try HTTPClient.request(method: "GET", url: "http://127.0.0.1:\(h.port("a-metrics"))/metrics").bodyText
        #expect(after.contains("videophone_calls_total{outcome=\"completed\"} 1"))
        #expect(after.contains("videophone_call_setup_seconds_bucket{stage=\"dtls\""))
        // Every series the shipped Grafana dashboard plots exists.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboard = try String(contentsOf: root.appendingPathComponent("docs/grafana/videophone-dashboard.json"), encoding: .utf8)
        let names = Set(dashboard.matches(of: /(videophone|process)_[a-z_]+/).map { String($0.output.0).replacingOccurrences(of: "_bucket", with: "") })
        #expect(names.count >= 10)
        for n in names { #expect(after.contains(n), "dashboard plots \(n), which /metrics does not have") }
        // Prometheus's own checker.
        let file = h.dir + "/metrics.txt"
        try after.write(toFile: file, atomically: true, encoding: .utf8)
        let (status, report) = try runTool("/bin/sh", ["-c", "promtool check metrics < \(file)"])
        #expect(status == 0, "promtool: \(report)")
    }

    /// A fresh daemon exports every series it can emit, with its known labels at zero, so a
    /// new device's dashboard and alerts see them before the first call (issue 14).
    @Test func metricsExistFromStart() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")], extra: "[metrics]\nlisten = \"127.0.0.1:\(h.port("a-metrics"))\"")
        let r = try HTTPClient.request(method: "GET", url: "http://127.0.0.1:\(h.port("a-metrics"))/metrics")
        #expect(r.status == 200)
        let text = r.bodyText
        var expected = ["videophone_in_call 0", "videophone_target_media_rate_bytes_per_second 0", "videophone_jitter_buffer_delay_seconds 0",
                        "videophone_audio_concealed_samples 0", "videophone_round_trip_time_seconds 0",
                        "videophone_encode_seconds_count 0", "videophone_capture_to_wire_seconds_count 0",
                        "process_cpu_seconds_total ", "process_resident_memory_bytes "]
        expected += CallOutcome.allCases.map { "videophone_calls_total{outcome=\"\($0.rawValue)\"} 0" }
        expected += ["signalling", "ice", "dtls", "first_media"].map { "videophone_call_setup_seconds_count{stage=\"\($0)\"} 0" }
        expected += ["network", "camera", "button", "microphone", "speaker"].map { "videophone_device_fault{part=\"\($0)\"} 0" }
        expected += ["capture", "playback"].map { "videophone_sound_xruns{direction=\"\($0)\"} 0" }
        for kind in ["audio", "video"] {
            expected += ["videophone_jitter_seconds{kind=\"\(kind)\"} 0", "videophone_packets_lost{kind=\"\(kind)\"} 0"]
            expected += ["receive", "send"].map { "videophone_media_rate_bytes_per_second{direction=\"\($0)\",kind=\"\(kind)\"} 0" }
        }
        expected += ["receive", "send"].map { "videophone_frames_per_second{direction=\"\($0)\"} 0" }
        for local in ["host", "srflx", "prflx", "relay"] {
            expected += ["host", "srflx", "prflx", "relay"].map { "videophone_ice_selected_pairs_total{local=\"\(local)\",remote=\"\($0)\"} 0" }
        }
        for line in expected { #expect(text.contains(line), "\(line) missing from a fresh daemon's /metrics") }
        // Build info: version and architecture of this build; the simulated board encodes with x264.
        let info = text.split(separator: "\n").first { $0.hasPrefix("videophone_build_info{") }.map(String.init) ?? ""
        #expect(info.contains("version=\"\(BuildInfo.version)\""), "build_info: \(info)")
        #expect(info.contains("encoder=\"x264\""), "build_info: \(info)")
        #expect(info.contains("arch=\""), "build_info: \(info)")
        #expect(info.hasSuffix(" 1") || info.hasSuffix(" 1.0"), "build_info: \(info)")
        // Every series the shipped Grafana dashboard plots exists before the first call too.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboard = try String(contentsOf: root.appendingPathComponent("docs/grafana/videophone-dashboard.json"), encoding: .utf8)
        let names = Set(dashboard.matches(of: /(videophone|process)_[a-z_]+/).map { String($0.output.0).replacingOccurrences(of: "_bucket", with: "") })
        #expect(names.contains("videophone_build_info"))
        for n in names { #expect(text.contains(n), "dashboard plots \(n), which a fresh daemon's /metrics does not have") }
        let file = h.dir + "/metrics-fresh.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let (status, report) = try runTool("/bin/sh", ["-c", "promtool check metrics < \(file)"])
        #expect(status == 0, "promtool: \(report)")
    }

    @Test func pinnedFingerprintsAndPerPeerTokens() throws {
        let h = try DaemonHarness()
        // b knows a by its own token and a pinned fingerprint that is not a's.
        let wrong = "sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":")
        try h.start("b", peers: [("a", "http://127.0.0.1:\(h.port("a"))", "x")], peerExtra: ["a": "accept_token = \"a-to-b\"\nfingerprint = \"\(wrong)\""])
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "a-to-b")])
        let reply = try h.control("a", "call")
        #expect(reply.contains("403") && reply.contains("fingerprint"), "\(reply)")
        #expect(h.log("b").contains("certificate fingerprint does not match the pinned one"))
        #expect(state(try h.status("b")) == "idle")
        // With the right fingerprint the same call goes through, identified as peer "a".
        let identity = try h.control("a", "identity").split(separator: "\n").last.map(String.init) ?? ""
        h.processes["b"]!.terminate(); h.processes["b"]!.waitUntilExit()
        try h.start("b", peers: [("a", "http://127.0.0.1:\(h.port("a"))", "x")], peerExtra: ["a": "accept_token = \"a-to-b\"\nfingerprint = \"\(identity)\""])
        #expect(try h.control("a", "call").hasPrefix("ok"))
        let s = try h.status("b")
        #expect((s["peer"] as? String) == "a")
        _ = try h.control("a", "hangup")
        // A token nobody was given: 401.
        let r = try HTTPClient.request(method: "POST", url: "http://127.0.0.1:\(h.port("b"))/call",
                                       headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer nope")], body: Array("v=0".utf8))
        #expect(r.status == 401)
    }

    @Test func glareLeavesExactlyOneCall() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "a-to-b")], autoAnswer: false, peerExtra: ["b": "accept_token = \"b-to-a\""])
        try h.start("b", peers: [("a", "http://127.0.0.1:\(h.port("a"))", "b-to-a")], autoAnswer: false, peerExtra: ["a": "accept_token = \"a-to-b\""])
        // Both press at once.
        let ta = Thread { _ = try? h.control("a", "press") }
        let tb = Thread { _ = try? h.control("b", "press") }
        ta.start(); tb.start()
        let both = h.wait(5) {
            guard let sa = try? h.status("a"), let sb = try? h.status("b") else { return false }
            return state(sa) == "in-call" && state(sb) == "in-call"
        }
        #expect(both != nil, "a: \((try? h.status("a"))?["state"] ?? "?"), b: \((try? h.status("b"))?["state"] ?? "?")\n\(h.log("a"))\n\(h.log("b"))")
        h.pause(1)
        let sa = try h.status("a"), sb = try h.status("b")
        #expect(stat(sa, type: "inbound-rtp", kind: "video", "framesReceived") > 10)
        #expect(stat(sb, type: "inbound-rtp", kind: "video", "framesReceived") > 10)
        #expect((sa["call"] as? [String: Any])?["id"] != nil && (sb["call"] as? [String: Any])?["id"] != nil)
    }

    @Test func ringingAnsweredByThePressAndLEDs() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")], autoAnswer: false)
        try h.start("b", peers: [], autoAnswer: false)
        #expect((try h.status("b"))["led"] as? String == "error-not-provisioned")
        #expect((try h.status("a"))["led"] as? String == "off")
        _ = try h.control("a", "call")
        #expect(h.wait(2) { (try? h.status("b")).map { state($0) == "ringing" && $0["led"] as? String == "fast-blink" } ?? false } != nil)
        #expect((try h.status("a"))["led"] as? String == "slow-blink")
        h.pause(1)
        // No media flows to the caller before the answer.
        #expect(stat(try h.status("a"), type: "inbound-rtp", kind: "video", "framesReceived") == 0)
        #expect(try h.control("b", "press").contains("in-call"))
        #expect(h.wait(2) { (try? h.status("a")).map { state($0) == "in-call" && $0["led"] as? String == "steady" } ?? false } != nil)
        _ = try h.control("b", "press", )
        #expect(h.wait(1) { (try? h.status("a")).map { state($0) == "idle" } ?? false } != nil)
    }

    @Test func sighupReloadKeepsTheCallAndRefusesABrokenFile() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")])
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        #expect(h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 10 } ?? false } != nil)
        let original = try String(contentsOfFile: h.configPath("a"), encoding: .utf8)
        // A broken file: the running configuration stays and the log says why.
        try (original + "\n[metrics]\nlisten = 5\n").write(toFile: h.configPath("a"), atomically: true, encoding: .utf8)
        kill(h.processes["a"]!.processIdentifier, SIGHUP)
        #expect(h.wait(2) { h.log("a").contains("configuration reload failed") } != nil)
        #expect(h.log("a").contains("metrics.listen: expected a string"))
        // A good file with a second peer: the call goes on, the new peer is known.
        try (original + "\n[[peer]]\nname = \"c\"\nurl = \"http://127.0.0.1:9\"\ntoken = \"t\"\n").write(toFile: h.configPath("a"), atomically: true, encoding: .utf8)
        let before = stat(try h.status("b"), type: "inbound-rtp", kind: "video", "framesReceived")
        kill(h.processes["a"]!.processIdentifier, SIGHUP)
        #expect(h.wait(2) { h.log("a").contains("configuration reloaded") } != nil)
        h.pause(1)
        #expect(state(try h.status("a")) == "in-call")
        #expect(stat(try h.status("b"), type: "inbound-rtp", kind: "video", "framesReceived") > before + 20)
        _ = try h.control("a", "hangup")
        _ = h.wait(1) { (try? h.status("a")).map { state($0) == "idle" } ?? false }
        #expect(try h.control("a", "call c").contains("cannot reach c"))
    }

    @Test func aFloodOfUnauthorisedPostsDoesNotDisturbTheCall() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")])
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        #expect(h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 10 } ?? false } != nil)
        let before = stat(try h.status("b"), type: "inbound-rtp", kind: "video", "framesReceived")
        let sentBefore = stat(try h.status("a"), type: "outbound-rtp", kind: "video", "framesEncoded")
        let started = Date()
        let tally = Locked([Int: Int]())
        let url = "http://127.0.0.1:\(h.port("b"))/call"
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<125 {
                let code = (try? HTTPClient.request(method: "POST", url: url,
                                                    headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer wrong")],
                                                    body: Array("v=0\r\n".utf8), timeout: .seconds(2)))?.status ?? -1
                tally.withLock { $0[code, default: 0] += 1 }
            }
        }
        let counts = tally.current
        // The flood came from this test's own address, so its bucket is empty for a moment:
        // status is answered 429 until it refills, which is the limiter doing its job.
        var served: [String: Any]?
        _ = h.wait(5) { served = try? h.status("b"); return served != nil }
        let elapsed = Date().timeIntervalSince(started)
        let status = try #require(served, "status refused for 5 s after the flood")
        let after = stat(status, type: "inbound-rtp", kind: "video", "framesReceived")
        #expect(counts.values.reduce(0, +) == 1000)
        #expect((counts[401] ?? 0) + (counts[429] ?? 0) + (counts[503] ?? 0) == 1000, "\(counts)")
        // Through the flood b took what a sent: at least 80 % of the frames a encoded in the
        // same time arrived (a ratio, so a machine loaded by other tests slows both alike).
        let sent = stat(try h.status("a"), type: "outbound-rtp", kind: "video", "framesEncoded") - sentBefore
        #expect(sent >= 10 * elapsed, "a encoded \(sent) frames in \(elapsed) s")
        #expect(after - before >= 0.8 * sent - 3, "b got \(after - before) of the \(sent) frames a sent in \(elapsed) s")
        // The same answer again: a second GET right away could find the bucket just emptied.
        #expect(state(status) == "in-call")
        // The journal is not flooded: at most a handful of refusal lines.
        #expect(h.log("b").components(separatedBy: "refused call: missing or wrong bearer token").count - 1 <= 10)
    }

    @Test func unitFilePassesSystemdAnalyzeVerify() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let unit = try String(contentsOf: root.appendingPathComponent("systemd/videophoned.service"), encoding: .utf8)
        let h = try DaemonHarness()
        let copy = h.dir + "/videophoned.service"
        try unit.replacingOccurrences(of: "/usr/bin/videophoned", with: DaemonHarness.binary).write(toFile: copy, atomically: true, encoding: .utf8)
        let (status, report) = try runTool("/usr/bin/systemd-analyze", ["verify", copy])
        #expect(status == 0, "systemd-analyze verify: \(report)")
        #expect(!report.contains("videophoned.service:"), "\(report)")
    }
}

@Suite(.serialized) struct ConsentTests {
    /// The peer freezes (SIGSTOP): consent checks go unanswered and the call ends within
    /// 30 s with the reason logged (RFC 7675).
    @Test func aVanishedPeerEndsTheCallWithin30Seconds() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")])
        try h.start("b", peers: [])
        _ = try h.control("a", "call")
        #expect(h.wait(5) { (try? h.status("a")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 10 } ?? false } != nil)
        let b = h.processes["b"]!.processIdentifier
        kill(b, SIGSTOP)
        defer { kill(b, SIGCONT) }
        let ended = h.wait(33) { (try? h.status("a")).map { state($0) == "idle" } ?? false }
        #expect(ended != nil, "a still in the call 33 s after b vanished")
        #expect(h.log("a").contains("consent expired"))
        if let t = ended { #expect(t >= 25, "ended after \(t) s: too early for consent expiry") }
    }
}

@Suite(.serialized) struct MissingDeviceTests {
    /// No camera at the configured path: the daemon starts anyway, says which device
    /// failed and why, shows the error pattern, and calls carry audio.
    @Test func aMissingCameraLeavesACallWithAudio() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")],
                    extra: "[video]\nsource = \"v4l2\"\ndevice = \"/dev/video-not-here\"")
        try h.start("b", peers: [])
        #expect(try h.control("a", "call").hasPrefix("ok"))
        #expect(h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "audio", "packetsDecoded") > 20 } ?? false } != nil)
        #expect(h.log("a").contains("camera unavailable") && h.log("a").contains("/dev/video-not-here"))
        #expect((try h.status("a"))["led"] as? String == "steady")  // in a call, the call's pattern shows
        _ = try h.control("a", "hangup")
        #expect(h.wait(2) { (try? h.status("a")).map { $0["led"] as? String == "error-camera-missing" } ?? false } != nil)
    }

    /// A sound device that cannot be opened (here: a card that does not exist): the daemon
    /// starts, names the device and ALSA's reason, lists the fault, and calls carry video.
    @Test func aMissingSoundCardLeavesACallWithVideo() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")],
                    extra: "[audio]\nsource = \"alsa\"\ncapture_device = \"hw:CARD=NoSuchCard\"\nsink = \"alsa\"\nplayback_device = \"hw:CARD=NoSuchCard\"")
        try h.start("b", peers: [])
        #expect(try h.control("a", "call").hasPrefix("ok"))
        #expect(h.wait(5) { (try? h.status("b")).map { stat($0, type: "inbound-rtp", kind: "video", "framesReceived") > 10 } ?? false } != nil)
        let log = h.log("a")
        #expect(log.contains("microphone unavailable") && log.contains("speaker unavailable") && log.contains("hw:CARD=NoSuchCard"), "\(log)")
        let faults = (try h.status("a"))["faults"] as? [String] ?? []
        #expect(faults == ["microphone", "speaker"])
        _ = try h.control("a", "hangup")
        #expect(h.wait(2) { (try? h.status("a")).map { $0["led"] as? String == "error-device" } ?? false } != nil)
    }

    /// A call button line that cannot be had (its chip is not there; this machine has no
    /// GPIO chip at all): the daemon starts, says which line and why, shows the device
    /// fault, and keeps retrying: when the chip's path changes under it (a file appears that
    /// is not a GPIO chip), the next attempt, within the 5 s retry period, fails for the new
    /// reason and says so. `videophonectl press` calls meanwhile.
    @Test func aMissingButtonLineIsLoggedAndRetried() throws {
        // libgpiod 1.x opens a chip path only under /dev/.
        let chip = "/dev/videophone-test-chip-\(getpid())-\(Int.random(in: 0...1_000_000))"
        unlink(chip)
        defer { unlink(chip) }
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")],
                    extra: "[gpio]\nchip = \"\(chip)\"\nbutton = 3")
        try h.start("b", peers: [])
        func unavailable() -> [String] { h.log("a").split(separator: "\n").map(String.init).filter { $0.contains("call button unavailable") } }
        #expect(h.wait(3) { !unavailable().isEmpty } != nil)
        let first = unavailable()
        #expect(first.count == 1, "\(first)")
        #expect(first.first?.contains("\(chip) line 3") == true, "\(first)")
        #expect(first.first?.contains("no such chip or line") == true, "\(first)")
        let s = try h.status("a")
        #expect(s["faults"] as? [String] == ["button"])
        #expect(s["led"] as? String == "error-device")
        // The chip path appears, but is a plain file: only a new attempt can see that.
        #expect(FileManager.default.createFile(atPath: chip, contents: Data()))
        let retried = h.wait(8) { unavailable().count >= 2 }
        #expect(retried != nil, "no retry within 8 s of the chip path appearing:\n\(h.log("a"))")
        let second = unavailable().dropFirst().first ?? ""
        #expect(second.contains("\(chip) line 3") && !second.contains("no such chip or line"), "\(second)")
        #expect((try h.status("a"))["faults"] as? [String] == ["button"])
        // The control socket's press still calls the first peer.
        #expect(try h.control("a", "press").hasPrefix("ok"))
        #expect(h.wait(5) { (try? h.status("b")).map { state($0) == "in-call" } ?? false } != nil, "press did not call b")
        _ = try h.control("a", "hangup")
    }
}
