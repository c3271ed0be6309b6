import Codecs
import Display
import Logging
import MediaDevices
import NetworkCore
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// `videophone-bench --display S`: the receive side's video figures.
/// 1. libavcodec decode time per frame (and its CPU) at 720p30 on x264's output of the
///    simulated camera, and composing a picture onto a 1280×720 screen;
/// 2. glass to glass in the simulator: two in-process devices with off-screen displays in an
///    S-second call, from the capture timestamp at A to the flip that shows it at B, and the
///    lip-sync offset (flip time minus when the matching audio is heard);
/// 3. resident memory of a separate callee process with the decoder and screen in a call.
func runDisplayBench(seconds: Int, binary: String) {
    func spreadOf(_ xs: [Double], _ unit: String = "ms") -> String {
        guard !xs.isEmpty else { return "-" }
        return "\(fmt(percentile(xs, 50), 2)) \(unit) (p25–p75 \(fmt(percentile(xs, 25), 2))–\(fmt(percentile(xs, 75), 2)), p95 \(fmt(percentile(xs, 95), 2)), min–max \(fmt(xs.min()!, 2))–\(fmt(xs.max()!, 2)), n=\(xs.count))"
    }
    func threadCPU() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    // 1. Decode and compose.
    let frames = 300
    let cam = TestPatternCamera(width: 1280, height: 720, fps: 30)
    guard let enc = try? X264Encoder(settings: H264EncoderSettings(width: 1280, height: 720, fps: 30, bitrateKbps: 2000)),
          let dec = try? AVCodecH264Decoder() else { print("## Display: x264 or libavcodec did not open"); return }
    var encoded: [[UInt8]] = []
    for n in 0..<frames {
        if let f = enc.encode(i420: UnsafeRawBufferPointer(cam.draw()), forceKeyframe: n == 0) { encoded.append(f.data) }
    }
    var picture = I420Picture()
    var decodeMs: [Double] = [], composeMs: [Double] = []
    var decodeCPU = 0.0
    var fb = Framebuffer(width: 1280, height: 720)
    var renderer = ScreenRenderer()
    for data in encoded {
        let c0 = threadCPU(), t0 = Instant.now()
        let r = data.withUnsafeBytes { dec.decode($0, into: &picture) }
        decodeMs.append((Instant.now() - t0).milliseconds)
        decodeCPU += threadCPU() - c0
        guard case .picture = r else { continue }
        let t1 = Instant.now()
        renderer.render(.inCall(peer: "alice"), faults: [], remote: picture, local: nil, into: &fb)
        composeMs.append((Instant.now() - t1).milliseconds)
    }
    let videoSeconds = Double(encoded.count) / 30
    print("## Display: received video (libavcodec \(dec.name), low delay, 1 thread), 720p30 x264 test pattern at 2 Mbit/s")
    print("decode per frame          \(spreadOf(decodeMs))")
    print("software-decode CPU       \(fmt(decodeCPU / videoSeconds * 100, 1)) % of one core at 30 fps")
    print("compose onto 1280x720     \(spreadOf(composeMs))   (scale + BT.601 → XRGB8888)")

    // 2. Glass to glass and lip sync, two devices in this process.
    func config(_ name: String, port: UInt16, peer: (String, UInt16)?) -> DeviceConfig {
        var c = DeviceConfig()
        c.name = name
        let dir = "/tmp/videophone-bench-\(getpid())-display-\(name)"
        mkdir(dir, 0o700)
        c.stateDirectory = dir
        c.autoAnswer = true
        c.signallingHost = "127.0.0.1"
        c.signallingPort = port
        c.signallingToken = "\(name)-token"
        c.controlSocket = dir + "/control.sock"
        c.networkAddresses = ["127.0.0.1"]
        c.displayOutput = "simulated"
        if let (p, pp) = peer { c.peers = [PeerConfig(name: p, url: "http://127.0.0.1:\(pp)", token: "\(p)-token")] }
        return c
    }
    let logger = Logger(label: "bench")
    let pa = freeLoopbackPort(), pb = freeLoopbackPort()
    guard let a = try? Daemon(config: config("alice", port: pa, peer: ("bob", pb)), logger: logger),
          let b = try? Daemon(config: config("bob", port: pb, peer: ("alice", pa)), logger: logger) else {
        print("glass to glass: the devices did not start"); return
    }
    do { try a.device.placeCall(to: "bob") } catch { print("glass to glass: call failed: \(error)"); return }
    sleep(3)  // set-up and the first keyframe are not part of the steady state
    let skip = b.device.screen?.figures.glassToGlassMs.count ?? 0
    let skipSync = b.device.currentCall?.media.figures.video?.syncOffsetMs.count ?? 0
    sleep(UInt32(seconds))
    let g2g = Array((b.device.screen?.figures.glassToGlassMs ?? []).dropFirst(skip))
    let v = b.device.currentCall?.media.figures.video
    let sync = Array((v?.syncOffsetMs ?? []).dropFirst(skipSync))
    _ = a.device.hangup()
    sleep(1)
    a.stop()
    b.stop()
    print("glass to glass (sim)      \(spreadOf(g2g))   capture at A → flip at B, loopback, 60 Hz off-screen vblank")
    let within = sync.filter { $0 <= 45 && $0 >= -125 }.count
    print("lip-sync offset           \(spreadOf(sync))   flip − audio heard (+: audio ahead); within −125/+45 ms: \(sync.isEmpty ? "-" : fmt(Double(within) * 100 / Double(sync.count), 1)) %")
    if let v {
        print("frames: decoded \(v.decoded), lip-synced \(v.lipSynced), late \(v.late), not drawn \(v.skipped), decode errors \(v.decodeErrors), keyframe requests \(v.keyframeRequests), jitter buffer \(fmt(v.jitterBufferMs, 0)) ms")
    }

    // 3. RSS of a callee process that decodes and draws.
    func writeConfig(_ c: DeviceConfig, display: String) -> String {
        let path = c.stateDirectory + "/config.toml"
        var t = "[device]\nname = \"\(c.name)\"\nstate_directory = \"\(c.stateDirectory)\"\nauto_answer = true\n"
        t += "[signalling]\nlisten = \"127.0.0.1:\(c.signallingPort)\"\ntoken = \"\(c.signallingToken)\"\n"
        t += "[control]\nsocket = \"\(c.controlSocket)\"\n[network]\naddresses = [\"127.0.0.1\"]\n[display]\noutput = \"\(display)\"\n"
        for p in c.peers { t += "[[peer]]\nname = \"\(p.name)\"\nurl = \"\(p.url)\"\ntoken = \"\(p.token)\"\n" }
        let f = fopen(path, "w")!
        fputs(t, f)
        fclose(f)
        return path
    }
    func start(_ path: String) -> pid_t {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), strdup("--config"), strdup(path), nil]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, binary, &actions, nil, argv, environ) == 0 else { return 0 }
        return pid
    }
    func rss(_ pid: pid_t) -> (Int, Int) {
        guard let f = fopen("/proc/\(pid)/status", "r") else { return (0, 0) }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        var rss = 0, hwm = 0
        while fgets(&line, 256, f) != nil {
            let s = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let kb = Int(s.split(separator: " ").dropFirst().first { !$0.isEmpty } ?? "") ?? 0
            if s.hasPrefix("VmRSS:") { rss = kb }
            if s.hasPrefix("VmHWM:") { hwm = kb }
        }
        return (rss, hwm)
    }
    /// The callee's RSS idle and after `seconds` in a call, with `display` as its output.
    func calleeRSS(display: String) -> (idle: (Int, Int), call: (Int, Int))? {
        let qa = freeLoopbackPort(), qb = freeLoopbackPort()
        let callee = "rss-\(display)-bob"
        let ca = config("rss-\(display)-alice", port: qa, peer: (callee, qb)), cb = config(callee, port: qb, peer: nil)
        let pidA = start(writeConfig(ca, display: display)), pidB = start(writeConfig(cb, display: display))
        guard pidA > 0, pidB > 0 else { return nil }
        defer { kill(pidA, SIGTERM); kill(pidB, SIGTERM); var st: Int32 = 0; waitpid(pidA, &st, 0); waitpid(pidB, &st, 0) }
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? controlRequest(path: ca.controlSocket, command: "status")) != nil && (try? controlRequest(path: cb.controlSocket, command: "status")) != nil
            usleep(50_000)
        }
        let idle = rss(pidB)
        _ = try? controlRequest(path: ca.controlSocket, command: "call \(callee)")
        sleep(UInt32(seconds))
        let inCall = rss(pidB)
        _ = try? controlRequest(path: ca.controlSocket, command: "hangup")
        return (idle, inCall)
    }
    func mb(_ kb: Int) -> String { fmt(Double(kb) / 1024, 1) }
    for output in ["simulated", "none"] {
        guard let r = calleeRSS(display: output) else { print("RSS: cannot start \(binary)"); return }
        print("callee RSS, [display] \(output): idle \(mb(r.idle.0)) MB, in a \(seconds) s 720p30 call \(mb(r.call.0)) MB, peak (VmHWM) \(mb(r.call.1)) MB")
    }
}
