import AudioProcessing
#if canImport(Glibc)
import Glibc
#endif
import CallControl
import Codecs
import Logging
import MediaDevices
import MediaDevicesLinux
import NetworkCore

/// A part of the board that can fail while the daemon keeps running. Ordered by what the
/// LED shows first when several fail.
public enum DeviceFault: String, Comparable, Sendable, CaseIterable {
    /// `broker`: no broker of `[broker] urls` can be reached (shown as a network fault).
    case network, broker, camera, button, microphone, speaker

    var pattern: LEDPattern {
        switch self {
        case .network, .broker: .errorNoNetwork
        case .camera: .errorCameraMissing
        case .button, .microphone, .speaker: .errorDevice
        }
    }

    private var rank: Int { Self.allCases.firstIndex(of: self) ?? Self.allCases.count }
    public static func < (a: DeviceFault, b: DeviceFault) -> Bool { a.rank < b.rank }
}

/// A board library the config needs would not load (the key, the soname, the package, why).
struct BoardLibraryMissing: Error, CustomStringConvertible {
    let description: String
}

/// The board's camera, microphone, speaker and encoder as the config names them: opened
/// for each call, checked at start, probed while idle when they fail, and the faults they
/// cause (which the LED shows). No call state lives here.
final class BoardParts: @unchecked Sendable {
    let logger: Logger
    private let faults = Locked<Set<DeviceFault>>([])
    /// Told the most important fault whenever the set changes (nil: none).
    let onFaultsChanged: @Sendable (Set<DeviceFault>) -> Void
    /// The hardware encoder found at start: nil until looked for, then the path or none.
    private let hardwareEncoder = Locked<String??>(nil)

    init(logger: Logger, onFaultsChanged: @escaping @Sendable (Set<DeviceFault>) -> Void) {
        self.logger = logger
        self.onFaultsChanged = onFaultsChanged
    }

    var current: Set<DeviceFault> { faults.current }

    /// Records that a part failed or works again.
    func report(_ fault: DeviceFault, failing: Bool) {
        let (changed, now) = faults.withLock { f -> (Bool, Set<DeviceFault>) in
            let before = f
            if failing { f.insert(fault) } else { f.remove(fault) }
            return (before != f, f)
        }
        if changed { onFaultsChanged(now) }
    }

    /// Opens and closes the configured camera, microphone and speaker once (at start), so
    /// a missing part shows on the LED before anyone tries to call.
    func check(_ c: DeviceConfig) {
        if c.videoSource == "v4l2" { _ = openCamera(c) }
        if c.audioSource == "alsa" { _ = openMicrophone(c) }
        if c.audioSink == "alsa" { _ = openSpeaker(c) }
        // The processing library starts now: a failure shows in status before any call.
        _ = audioProcessor(c)
    }

    /// Tries the failing parts again (while idle, every 5 s), so the LED and status clear
    /// as soon as one is back; calls open their devices anew anyway.
    func probeFailed(_ c: DeviceConfig) {
        for part in faults.current.sorted() {
            let back: String? = switch part {
            case .camera where c.videoSource == "v4l2": openCamera(c, quietly: true).map { _ in c.videoDevice }
            case .microphone where c.audioSource == "alsa": openMicrophone(c, quietly: true).map { _ in c.audioCaptureDevice }
            case .speaker where c.audioSink == "alsa": openSpeaker(c, quietly: true).map { _ in c.audioPlaybackDevice }
            default: nil
            }
            if let device = back { logger.info("\(part.rawValue) back", metadata: ["device": "\(device)"]) }
        }
    }

    /// Opens one part. Either way the fault set learns the outcome; a failure is logged
    /// with the device and the reason unless `quietly` (idle retries).
    private func open<Part>(_ part: DeviceFault, _ device: String, unavailable: String, quietly: Bool,
                            _ make: () throws -> Part) -> Part? {
        do {
            let opened = try make()
            report(part, failing: false)
            return opened
        } catch {
            if !quietly { logger.error("\(unavailable)", metadata: ["device": "\(device)", "REASON": "\(error)"]) }
            report(part, failing: true)
            return nil
        }
    }

    /// A board library the config needs, loaded (dlopen) on first use; when it will not load,
    /// the error names the config key that needs it and the library (soname and package).
    private func require(_ library: BoardLibrary, for key: String) throws(BoardLibraryMissing) {
        do { try library.load() } catch { throw BoardLibraryMissing(description: "\(key) needs \(error)") }
    }

    func openCamera(_ c: DeviceConfig, quietly: Bool = false) -> V4L2Camera? {
        open(.camera, c.videoDevice, unavailable: "camera unavailable; calls carry audio only", quietly: quietly) {
            try require(.v4l2, for: "video.source = \"v4l2\"")
            return try V4L2Camera(device: c.videoDevice, width: c.videoWidth, height: c.videoHeight, fps: c.videoFPS)
        }
    }

    func openMicrophone(_ c: DeviceConfig, quietly: Bool = false) -> ALSACapture? {
        open(.microphone, c.audioCaptureDevice, unavailable: "microphone unavailable; calls go on without it", quietly: quietly) {
            try require(.alsa, for: "audio.source = \"alsa\"")
            return try ALSACapture(device: c.audioCaptureDevice)
        }
    }

    func openSpeaker(_ c: DeviceConfig, quietly: Bool = false) -> ALSAPlayback? {
        open(.speaker, c.audioPlaybackDevice, unavailable: "speaker unavailable; received audio is decoded but not played", quietly: quietly) {
            try require(.alsa, for: "audio.sink = \"alsa\"")
            return try ALSAPlayback(device: c.audioPlaybackDevice)
        }
    }

    /// The camera a call uses. One that cannot be opened is logged and shown on the LED;
    /// the call goes on with what works (audio).
    func makeCamera(_ c: DeviceConfig) -> (any VideoSource)? {
        switch c.videoSource {
        case "test-pattern":
            return TestPatternCamera(width: c.videoWidth, height: c.videoHeight, fps: c.videoFPS)
        case "v4l2":
            guard let cam = openCamera(c) else { return nil }
            cam.onAvailability = { [weak self] problem in
                guard let self else { return }
                if let problem {
                    logger.error("camera lost; the call goes on with audio while it is retried", metadata: ["device": "\(c.videoDevice)", "REASON": "\(problem)"])
                } else {
                    logger.info("camera back; video resumes", metadata: ["device": "\(c.videoDevice)"])
                }
                report(.camera, failing: problem != nil)
            }
            return cam
        default:
            return nil
        }
    }

    /// Looks for the board's hardware H.264 encoder once (at start), logging what it found.
    @discardableResult
    func detectEncoder(_ c: DeviceConfig) -> String? {
        if let known = hardwareEncoder.current { return known }
        var found: String? = nil
        if c.videoEncoder != "x264" {
            if let path = c.videoEncoderDevice {
                found = path
            } else if let f = V4L2M2MEncoder.find() {
                logger.info("hardware H.264 encoder found", metadata: ["device": "\(f.path)", "card": "\(f.card)"])
                found = f.path
            } else {
                logger.info("no hardware H.264 encoder; encoding with x264")
            }
        }
        hardwareEncoder.withLock { $0 = .some(found) }
        return found
    }

    /// The encoder a call uses: the board's hardware encoder when there is one (and it
    /// opens), x264 otherwise.
    func makeEncoder(_ c: DeviceConfig, _ settings: H264EncoderSettings) throws -> any VideoEncoder {
        if let path = detectEncoder(c) {
            do {
                let e = try V4L2M2MEncoder(path: path, settings: settings)
                if !e.refusedControls.isEmpty {
                    logger.warning("hardware encoder refused some settings", metadata: ["device": "\(path)", "refused": "\(e.refusedControls.joined(separator: ", "))"])
                }
                return e
            } catch {
                logger.error("hardware encoder unavailable; using x264", metadata: ["device": "\(path)", "REASON": "\(error)"])
            }
        }
        return try X264Encoder(settings: settings)
    }

    /// The microphone a call uses (a busy or missing device is logged; the call goes on).
    func makeMicrophone(_ c: DeviceConfig) -> (any AudioSource)? {
        switch c.audioSource {
        case "tone": ToneSource()
        case "alsa": openMicrophone(c)
        case "talker": simulatedRoom(c).map { TalkerMicrophone(room: $0) }
        default: nil
        }
    }

    /// The speaker a call plays to; falls back to counting when the device cannot open.
    /// With the simulated talker, the counting speaker plays into the same room.
    func makeSpeaker(_ c: DeviceConfig) -> any AudioSink {
        let counting = { CountingAudioSink(room: c.audioSource == "talker" ? self.simulatedRoom(c) ?? nil : nil) }
        guard c.audioSink == "alsa" else { return counting() }
        return openSpeaker(c) ?? counting()
    }

    /// The simulator's room (`audio.source = "talker"`): one per daemon, so the echo path
    /// stays the same from call to call. nil (logged) when the talker file is unreadable.
    private let room = Locked<(key: String, room: SimulatedRoom?)?>(nil)

    func simulatedRoom(_ c: DeviceConfig) -> SimulatedRoom? {
        let key = "\(c.audioTalkerFile ?? "")|\(c.audioEchoDelayMs)|\(c.audioEchoAttenuationDB)"
        return room.withLock { r in
            if let r, r.key == key { return r.room }
            let file = c.audioTalkerFile ?? ""
            var made: SimulatedRoom?
            if let pcm = loadSpeechWAV(path: file) {
                made = SimulatedRoom(room: RoomResponse(delayMs: Double(c.audioEchoDelayMs), attenuationDB: Double(c.audioEchoAttenuationDB)), talker: pcm)
            }
            if made == nil { logger.error("simulated talker unavailable; calls go on without a microphone", metadata: ["file": "\(file)", "REASON": "not a 16-bit PCM WAV file"]) }
            r = (key, made)
            return made
        }
    }

    /// The microphone's processing stage: one per daemon (the canceller keeps what it
    /// learnt of the room from call to call), made again when its settings change. A
    /// library that fails to start leaves calls unprocessed, with the reason in status.
    private let processing = Locked<(settings: AudioProcessingSettings, processor: AudioProcessor?, fault: String?)?>(nil)

    func audioProcessor(_ c: DeviceConfig) -> AudioProcessor? {
        let settings = c.audioProcessing
        guard settings.anyEnabled, c.audioSource != "none" else { return nil }
        let logger = self.logger
        return processing.withLock { p in
            if let p, p.settings == settings { return p.processor }
            do {
                let a = try AudioProcessor(settings: settings)
                a.onEvent = { logger.warning("\($0)") }
                p = (settings, a, nil)
                logger.info("microphone processing", metadata: ["library": "\(AudioProcessor.library)", "echo_cancellation": "\(settings.echoCancellation)",
                                                                "noise_suppression": "\(settings.noiseSuppression)", "gain_control": "\(settings.gainControl)"])
                return a
            } catch {
                // The keys that ask for the stage, with the library's reason (a library that
                // will not load names its soname and package).
                let keys = [("audio.echo_cancellation", settings.echoCancellation), ("audio.noise_suppression", settings.noiseSuppression),
                            ("audio.gain_control", settings.gainControl)].filter { $0.1 }.map(\.0).joined(separator: ", ")
                let fault = "\(keys) need \(error)"
                logger.error("microphone processing unavailable; calls send the microphone unprocessed", metadata: ["REASON": "\(fault)"])
                p = (settings, nil, fault)
                return nil
            }
        }
    }

    /// The stage's figures (zero before the first call) and its fault, if any.
    func audioProcessingStatus(_ c: DeviceConfig) -> (settings: AudioProcessingSettings, figures: AudioProcessingFigures?, fault: String?) {
        let settings = c.audioProcessing
        let p = processing.current
        guard settings.anyEnabled, c.audioSource != "none" else { return (settings, nil, nil) }
        return (settings, p?.processor?.figures, p?.fault)
    }
}
