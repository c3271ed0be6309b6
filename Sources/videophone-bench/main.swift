import Codecs
import DTLS
import Logging
import MediaDevices
import NetworkCore
import PeerConnection
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// videophone-bench: the figures BENCHMARKS.md records. Two devices on loopback.
///
///   videophone-bench [--calls N] [--call-seconds S] [--latency-seconds S] [--binary PATH] [--json PATH]
///   videophone-bench --aec N [--aec-level low|moderate|high] [--aec-no-tracker]   (only the echo canceller's figures, N rooms;
///                                         --aec-no-tracker: the library alone, without the stage's bulk delay tracker)
///   videophone-bench --aec-check MIN_ERLE_DB   (one room, far-end single talk: exit 1 below the bound)
///   videophone-bench --echo-room CAPTURE PLAYBACK NEAR_WAV LOG [--room-delay-ms D] [--room-attenuation-db A] [--seconds S]
///                                         (the emulated board's acoustics: EchoRoom.swift)
///   videophone-bench --display S [--binary PATH]   (decode, compose, glass to glass, lip sync, callee RSS; S-second calls)
///
/// `--json` also writes the headline figures for `make perf-audit` (toolchain/perf-audit.py).
var calls = 20
var jsonPath: String? = nil
var callSeconds = 60
var latencySeconds = 10
var binary = ".build/release/videophoned"
var echoRuns: Int? = nil
var echoLevel = "moderate"
var echoCheck: Double? = nil
var echoTracker = true
var displaySeconds: Int? = nil
var echoRoom: [String]? = nil
var roomDelayMs = 10.0, roomAttenuationDB = 6.0, roomSeconds = 120.0
var args = Array(CommandLine.arguments.dropFirst())
while !args.isEmpty {
    let a = args.removeFirst()
    func value() -> String { args.isEmpty ? "" : args.removeFirst() }
    switch a {
    case "--calls": calls = Int(value()) ?? calls
    case "--call-seconds": callSeconds = Int(value()) ?? callSeconds
    case "--latency-seconds": latencySeconds = Int(value()) ?? latencySeconds
    case "--binary": binary = value()
    case "--aec": echoRuns = Int(value()) ?? 5
    case "--aec-level": echoLevel = value()
    case "--aec-no-tracker": echoTracker = false
    case "--aec-check": echoCheck = Double(value()) ?? 25
    case "--echo-room": echoRoom = (0..<4).map { _ in value() }
    case "--room-delay-ms": roomDelayMs = Double(value()) ?? roomDelayMs
    case "--room-attenuation-db": roomAttenuationDB = Double(value()) ?? roomAttenuationDB
    case "--seconds": roomSeconds = Double(value()) ?? roomSeconds
    case "--display": displaySeconds = Int(value()) ?? 20
    case "--json": jsonPath = value()
    default: printError("unknown argument \(a)\n"); exit(2)
    }
}

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = .warning
    return h
}
let logger = Logger(label: "bench")
if let r = echoRoom {
    exit(runEchoRoom(capture: r[0], playback: r[1], nearPath: r[2], logPath: r[3],
                     delayMs: roomDelayMs, attenuationDB: roomAttenuationDB, seconds: roomSeconds))
}
if let echoCheck { exit(runEchoCheck(minimumERLE: echoCheck) ? 0 : 1) }
if let echoRuns { runEchoBench(runs: echoRuns, level: echoLevel, tracker: echoTracker); exit(0) }
if let displaySeconds { signal(SIGPIPE, SIG_IGN); runDisplayBench(seconds: displaySeconds, binary: binary); exit(0) }
signal(SIGPIPE, SIG_IGN)

func fmt(_ v: Double?, _ digits: Int = 1) -> String { v.map { VideoPhone.fmt($0, digits) } ?? "-" }

/// "median (p25–p75, min–max)" of a sample.
func spread(_ xs: [Double], _ unit: String = "ms") -> String {
    guard !xs.isEmpty else { return "-" }
    return "\(fmt(percentile(xs, 50))) \(unit) (p25–p75 \(fmt(percentile(xs, 25)))–\(fmt(percentile(xs, 75))), min–max \(fmt(xs.min()))–\(fmt(xs.max())), n=\(xs.count))"
}

func tempDir(_ name: String) -> String {
    let d = "/tmp/videophone-bench-\(getpid())-\(name)"
    mkdir(d, 0o700)
    return d
}


func config(_ name: String, port: UInt16, peer: (String, UInt16)?) -> DeviceConfig {
    var c = DeviceConfig()
    c.name = name
    c.stateDirectory = tempDir(name)
    c.autoAnswer = true
    c.signallingHost = "127.0.0.1"
    c.signallingPort = port
    c.signallingToken = "\(name)-token"
    c.controlSocket = tempDir(name) + "/control.sock"
    c.networkAddresses = ["127.0.0.1"]
    if let (p, pp) = peer { c.peers = [PeerConfig(name: p, url: "http://127.0.0.1:\(pp)", token: "\(p)-token")] }
    return c
}

print("videophone-bench: two devices on loopback, 720p30 x264 (ultrafast, zerolatency, Constrained Baseline) + Opus 20 ms")
print("machine: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores\n")

// MARK: In-process devices: setup time and latency.

let portA = freeLoopbackPort(), portB = freeLoopbackPort()
let daemonA = try Daemon(config: config("alice", port: portA, peer: ("bob", portB)), logger: logger)
let daemonB = try Daemon(config: config("bob", port: portB, peer: ("alice", portA)), logger: logger)

func waitFor(_ timeout: Double, _ cond: () -> Bool) -> Bool {
    let end = Instant.now() + .nanoseconds(Int64(timeout * 1e9))
    while Instant.now() < end {
        if cond() { return true }
        usleep(500)
    }
    return false
}

var setup: [Double] = [], signalling: [Double] = [], ice: [Double] = [], dtls: [Double] = [], firstSent: [Double] = []
var firstVideoQueued: [Double] = [], firstVideoPacketIn: [Double] = []
// One warm-up call (page cache, first-use code paths), not counted.
for i in 0...calls {
    try daemonA.device.placeCall(to: "bob")
    guard let (pcA, _, offerAt) = daemonA.device.currentCall, let sentAt = offerAt else { fatalError("no call") }
    var got = waitFor(5) { daemonB.device.currentCall.map { $0.pc.stats.timeline.firstVideoFrameReceived != nil } ?? false }
    if !got { printError("call \(i): no frame at bob within 5 s\n") }
    let tb = daemonB.device.currentCall!.pc.stats.timeline
    let ta = pcA.stats.timeline
    if i > 0, got, let f = tb.firstVideoFrameReceived {
        setup.append((f - sentAt).milliseconds)
        if let x = ta.remoteDescription { signalling.append((x - sentAt).milliseconds) }
        if let x = ta.iceConnected { ice.append((x - sentAt).milliseconds) }
        if let x = ta.dtlsConnected { dtls.append((x - sentAt).milliseconds) }
        if let x = ta.firstMediaSent { firstSent.append((x - sentAt).milliseconds) }
        if let x = ta.firstVideoFrameQueued { firstVideoQueued.append((x - sentAt).milliseconds) }
        if let x = tb.firstVideoPacketReceived { firstVideoPacketIn.append((x - sentAt).milliseconds) }
    }
    _ = daemonA.device.hangup()
    got = waitFor(2) { daemonB.device.phase.name == "idle" }
    usleep(50_000)
}
var figures: [(String, Double)] = []
@MainActor func record(_ name: String, _ value: Double?) { if let value, value.isFinite { figures.append((name, value)) } }
record("setup_ms", percentile(setup, 50))
print("## Call setup: offer sent → first complete video frame at the callee (\(calls) calls, loopback)")
print("total               \(spread(setup))")
print("  answer received   \(spread(signalling))")
print("  ICE connected     \(spread(ice))")
print("  DTLS-SRTP ready   \(spread(dtls))")
print("  first packet sent \(spread(firstSent))")
print("  first video frame queued, at the sender    \(spread(firstVideoQueued))")
print("  first video packet, at the callee          \(spread(firstVideoPacketIn))")
print()

// A longer call for latency figures.
try daemonA.device.placeCall(to: "bob")
sleep(UInt32(latencySeconds))
let (pcA, _, _) = daemonA.device.currentCall!
let (_, mediaB, _) = daemonB.device.currentCall!
let wire = pcA.captureToWireSamples
let glass = mediaB.figures.captureToFrameMs
let statsB = daemonB.device.currentCall!.pc.stats
_ = daemonA.device.hangup()
print("## Latency, 720p30, \(latencySeconds) s call")
print("capture → first packet on the wire   p50 \(fmt(percentile(wire, 50))) ms  p99 \(fmt(percentile(wire, 99))) ms  (n=\(wire.count))")
print("capture at A → frame reassembled at B p50 \(fmt(percentile(glass, 50))) ms  p99 \(fmt(percentile(glass, 99))) ms  (n=\(glass.count))")
let inV = statsB.inbound.first { $0.kind == "video" }
print("frames received \(inV?.framesReceived ?? 0), packets lost \(inV?.packetsLost ?? 0)")
record("capture_to_wire_p50_ms", percentile(wire, 50))
record("capture_to_wire_p99_ms", percentile(wire, 99))
print()
daemonA.stop()
daemonB.stop()

// MARK: Separate processes: CPU and memory of one device.

func procStat(_ pid: Int32) -> (cpu: Double, rssKB: Int, hwmKB: Int) {
    var cpu = 0.0, rss = 0, hwm = 0
    if let f = fopen("/proc/\(pid)/stat", "r") {
        var buf = [CChar](repeating: 0, count: 4096)
        fgets(&buf, 4096, f)
        fclose(f)
        let line = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let close = line.lastIndex(of: ")") {
            let fields = line[line.index(after: close)...].split(separator: " ")
            // utime and stime are fields 14 and 15; after ")" index 11 and 12.
            if fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) {
                cpu = (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
    }
    if let f = fopen("/proc/\(pid)/status", "r") {
        var buf = [CChar](repeating: 0, count: 512)
        while fgets(&buf, 512, f) != nil {
            let line = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let value = Int(line.split(separator: " ").dropFirst().first { !$0.isEmpty }?.trimmingPrefix("\t") ?? "") ?? 0
            if line.hasPrefix("VmRSS:") { rss = value }
            if line.hasPrefix("VmHWM:") { hwm = value }
        }
        fclose(f)
    }
    return (cpu, rss, hwm)
}

func writeConfig(_ c: DeviceConfig) -> String {
    let path = c.stateDirectory + "/config.toml"
    var t = "[device]\nname = \"\(c.name)\"\nstate_directory = \"\(c.stateDirectory)\"\nauto_answer = true\n"
    t += "[signalling]\nlisten = \"127.0.0.1:\(c.signallingPort)\"\ntoken = \"\(c.signallingToken)\"\n"
    t += "[control]\nsocket = \"\(c.controlSocket)\"\n[network]\naddresses = [\"127.0.0.1\"]\n"
    for p in c.peers { t += "[[peer]]\nname = \"\(p.name)\"\nurl = \"\(p.url)\"\ntoken = \"\(p.token)\"\n" }
    let f = fopen(path, "w")!
    fputs(t, f)
    fclose(f)
    return path
}

func spawn(_ path: String, binary: String) -> pid_t {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), strdup("--config"), strdup(path), nil]
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    guard posix_spawn(&pid, binary, &actions, nil, argv, environ) == 0 else { fatalError("cannot start \(binary)") }
    return pid
}

let pA = freeLoopbackPort(), pB = freeLoopbackPort()
let cA = config("proc-alice", port: pA, peer: ("proc-bob", pB))
let cB = config("proc-bob", port: pB, peer: nil)
let pidA = spawn(writeConfig(cA), binary: binary), pidB = spawn(writeConfig(cB), binary: binary)
defer { kill(pidA, SIGTERM); kill(pidB, SIGTERM) }
_ = waitFor(5) { (try? controlRequest(path: cA.controlSocket, command: "status")) != nil && (try? controlRequest(path: cB.controlSocket, command: "status")) != nil }
sleep(1)
let idle = procStat(pidA)
let before = procStat(pidA)
let reply = (try? controlRequest(path: cA.controlSocket, command: "call proc-bob")) ?? "no reply"
if !reply.hasPrefix("ok") { printError("call failed: \(reply)\n") }
sleep(UInt32(callSeconds))
let after = procStat(pidA)
_ = try? controlRequest(path: cA.controlSocket, command: "hangup")
print("## One device (separate process) in a \(callSeconds) s two-way 720p30 call")
print("idle RSS               \(fmt(Double(idle.rssKB) / 1024)) MB")
print("CPU                    \(fmt((after.cpu - before.cpu) / Double(callSeconds) * 100)) % of one core (\(fmt(after.cpu - before.cpu, 2)) CPU-s)")
print("RSS at end of call     \(fmt(Double(after.rssKB) / 1024)) MB")
print("peak RSS (VmHWM)       \(fmt(Double(after.hwmKB) / 1024)) MB")
kill(pidA, SIGTERM)
kill(pidB, SIGTERM)
var status: Int32 = 0
waitpid(pidA, &status, 0)
waitpid(pidB, &status, 0)
let callCPUPerSecond = (after.cpu - before.cpu) / Double(callSeconds)
record("idle_rss_mb", Double(idle.rssKB) / 1024)
record("call_rss_peak_mb", Double(after.hwmKB) / 1024)
record("call_cpu_s_per_minute", callCPUPerSecond * 60)

// MARK: The floor: x264 alone on the same frames, same run.

/// CPU time of the calling thread.
func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// x264 with the call's settings (DeviceConfig's defaults: 1280×720, 30 fps, 2 Mbit/s,
/// ultrafast, zerolatency, one thread) on the simulated camera's moving picture, paced at
/// 30 fps like the camera. Only the encode calls are timed (drawing the picture is the
/// camera's cost, which the device pays on top).
let floorSeconds = min(callSeconds, 30)
let floorConfig = DeviceConfig()
let floorSettings = H264EncoderSettings(width: floorConfig.videoWidth, height: floorConfig.videoHeight,
                                        fps: floorConfig.videoFPS, bitrateKbps: floorConfig.videoBitrateKbps)
let pattern = TestPatternCamera(width: floorSettings.width, height: floorSettings.height, fps: floorSettings.fps)
let x264 = try X264Encoder(settings: floorSettings)
var encodeCPU = 0.0, encodedBytes = 0
let frameInterval = Duration.nanoseconds(1_000_000_000 / Int64(floorSettings.fps))
var due = Instant.now()
for n in 0..<(floorSeconds * floorSettings.fps) {
    let buf = pattern.draw()
    let t0 = threadCPUSeconds()
    if let f = x264.encode(i420: UnsafeRawBufferPointer(buf), forceKeyframe: n == 0) { encodedBytes += f.data.count }
    encodeCPU += threadCPUSeconds() - t0
    due = due + frameInterval
    let wait = (due - Instant.now()).milliseconds
    if wait > 0 { usleep(UInt32(wait * 1000)) }
}
let floorPerSecond = encodeCPU / Double(floorSeconds)

/// Opus alone, as the call runs it both ways: the tone encoded (20 ms frames, the call's
/// encoder settings) and a packet decoded per frame. Not paced: only its CPU is counted.
var opusCPU = 0.0
do {
    let encoder = try OpusEncoder()
    let decoder = try OpusDecoder()
    var pcm = [Int16](repeating: 0, count: OpusEncoder.frameSamples)
    var phase = 0.0
    let step = 2 * Double.pi * 440 / 48000
    for _ in 0..<(floorSeconds * 50) {
        for i in 0..<pcm.count { pcm[i] = Int16(8000 * sin(phase)); phase += step }
        let t0 = threadCPUSeconds()
        if let packet = encoder.encode(pcm) { _ = decoder.decode(packet[...]) }
        opusCPU += threadCPUSeconds() - t0
    }
}
let codecsPerSecond = floorPerSecond + opusCPU / Double(floorSeconds)
print()
print("## CPU against the floor: x264 alone on the same test pattern, same run")
print("x264 alone, 720p30, call settings   \(fmt(floorPerSecond * 30, 2)) CPU-s per 30 s (\(fmt(Double(encodedBytes) * 8 / Double(floorSeconds) / 1000, 0)) kbit/s)")
print("one device, two-way call            \(fmt(callCPUPerSecond * 30, 2)) CPU-s per 30 s")
print("ratio device / x264 alone           \(fmt(callCPUPerSecond / floorPerSecond, 2)) × (target ≤ 1.10)")
print("x264 + Opus both ways, alone         \(fmt(codecsPerSecond * 30, 2)) CPU-s per 30 s (Opus \(fmt(opusCPU / Double(floorSeconds) * 30, 2)))")
print("ratio device / codecs alone          \(fmt(callCPUPerSecond / codecsPerSecond, 2)) × (what the call costs beyond its codecs)")
record("x264_floor_cpu_s_per_minute", floorPerSecond * 60)
record("cpu_ratio_to_x264", callCPUPerSecond / floorPerSecond)
record("cpu_ratio_to_codecs", callCPUPerSecond / codecsPerSecond)

if let jsonPath {
    let body = figures.map { "  \"\($0.0)\": \(fmt($0.1, 3))" }.joined(separator: ",\n")
    let f = fopen(jsonPath, "w")!
    fputs("{\n\(body)\n}\n", f)
    fclose(f)
}
