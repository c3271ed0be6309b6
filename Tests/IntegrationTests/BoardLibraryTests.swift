import Foundation
import Testing

/// The board-only libraries (libasound, libv4l2 with libjpeg, libgpiod), libavcodec and
/// webrtc-audio-processing are loaded with dlopen when the config uses them: a simulated
/// device never maps them, and one that needs a library that will not load says which, and
/// for which config key, and keeps running.
@Suite(.serialized) struct BoardLibraryTests {
    /// The libraries as they appear in /proc/PID/maps (file names, any version).
    static let boardLibraries = ["libasound.so", "libv4l2.so", "libv4lconvert.so", "libjpeg.so", "libgpiod.so", "libwebrtc", "libavcodec.so", "libavutil.so"]

    static func mapped(_ pid: Int32) -> Set<String> {
        // Read to the end (procfs files report size 0).
        let maps = FileHandle(forReadingAtPath: "/proc/\(pid)/maps").map { String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) } ?? ""
        precondition(maps.contains("videophoned"), "cannot read /proc/\(pid)/maps")
        var names = Set<String>()
        for line in maps.split(separator: "\n") {
            guard let slash = line.lastIndex(of: "/") else { continue }
            let file = line[line.index(after: slash)...]
            for lib in boardLibraries where file.hasPrefix(lib) { names.insert(lib) }
        }
        return names
    }

    @Test func aSimulatedDeviceInACallMapsNoneOfThemAndAScreenLoadsOnlyLibavcodec() throws {
        let h = try DaemonHarness()
        try h.start("a", peers: [("b", "http://127.0.0.1:\(h.port("b"))", "b-token")])
        try h.start("b", peers: [], extra: "[display]\noutput = \"simulated\"")
        let a = h.processes["a"]!.processIdentifier, b = h.processes["b"]!.processIdentifier
        #expect(Self.mapped(a).isEmpty && Self.mapped(b).isEmpty, "mapped at start: a \(Self.mapped(a)), b \(Self.mapped(b))")
        #expect(try h.control("a", "call").hasPrefix("ok"))
        // Pictures decoded for b's off-screen display.
        func decoded() -> Int { (((try? h.status("b"))?["call"] as? [String: Any])?["media"] as? [String: Any])?["videoFramesDecoded"] as? Int ?? 0 }
        let shown = h.wait(20) { decoded() > 10 }
        #expect(shown != nil, "b decoded \(decoded()) frames; log:\n\(h.log("b"))")
        // a: test pattern, tone, counting speaker, no screen: nothing of them.
        #expect(Self.mapped(a).isEmpty, "a maps \(Self.mapped(a))")
        // b decodes for its (off-screen) display: libavcodec is loaded now (libjpeg may come
        // with its dependencies), and no board library.
        let onB = Self.mapped(b)
        #expect(onB.isSuperset(of: ["libavcodec.so", "libavutil.so"]), "b maps \(onB)")
        #expect(onB.isDisjoint(with: ["libasound.so", "libv4l2.so", "libv4lconvert.so", "libgpiod.so", "libwebrtc"]), "b maps \(onB)")
    }

    @Test func librariesThatWillNotLoadAreNamedWithTheKeyThatNeedsThemAndTheDaemonRunsOn() throws {
        let h = try DaemonHarness()
        let missing = ["ASOUND": "asound", "V4L2": "v4l2", "GPIOD": "gpiod", "APM": "apm"]
        var env: [String: String] = [:]
        for (tag, name) in missing { env["VIDEOPHONE_DLOPEN_\(tag)"] = "libvideophone-missing-\(name).so.9" }
        try h.start("c", peers: [], extra: """
            [video]
            source = "v4l2"
            device = "/dev/video0"
            [audio]
            source = "alsa"
            sink = "alsa"
            [gpio]
            button = "call-button"
            call_led = "call-led"
            """, environment: env)
        let pid = h.processes["c"]!.processIdentifier
        let faults = h.wait(5) {
            let f = ((try? h.status("c"))?["faults"] as? [String]) ?? []
            return Set(["camera", "microphone", "speaker", "button"]).isSubset(of: Set(f))
        }
        #expect(faults != nil, "faults: \(String(describing: (try? h.status("c"))?["faults"])); log:\n\(h.log("c"))")
        // Audio processing (on by default with ALSA) runs without the stage, the fault in status.
        let processing = try #require(try h.status("c")["audioProcessing"] as? [String: Any])
        let fault = processing["fault"] as? String ?? ""
        #expect(fault.contains("audio.echo_cancellation") && fault.contains("libvideophone-missing-apm.so.9") && fault.contains("did not load"), "\(fault)")
        // The log names each library and the key that needs it.
        let log = h.log("c")
        for (key, name) in [("video.source", "v4l2"), ("audio.source", "asound"), ("audio.sink", "asound"), ("gpio.button", "gpiod"), ("gpio.call_led", "gpiod")] {
            let line = log.split(separator: "\n").first { $0.contains(key) && $0.contains("needs libvideophone-missing-\(name).so.9") }
            #expect(line != nil, "no error naming \(key) and the \(name) library in:\n\(log)")
        }
        // Still running and answering; nothing of the real libraries was mapped.
        #expect(h.processes["c"]!.isRunning)
        #expect(try h.control("c", "status").count > 0)
        #expect(Self.mapped(pid).isEmpty, "mapped: \(Self.mapped(pid))")
    }
}
