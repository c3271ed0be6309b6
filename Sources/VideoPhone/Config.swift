import AudioProcessing
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A peer this device may call.
public struct PeerConfig: Sendable, Equatable {
    public var name: String
    /// Base URL of the peer's signalling endpoint, e.g. `http://192.0.2.7:8080`.
    public var url: String
    /// Bearer token we present when calling this peer.
    public var token: String
    /// Bearer token this peer presents when it calls us (empty: it cannot call us).
    public var acceptToken: String
    /// The peer's pinned certificate fingerprint, `sha-256 AB:CD:...` (`videophonectl
    /// identity` on the peer prints it); nil accepts any certificate the SDP names.
    public var fingerprint: String?
    /// Where it was defined, `FILE:LINE` (the main file or a `peers.d` drop-in).
    public var source: String?
    /// How calls to it are signalled: its own HTTP port (`url`), or signed messages
    /// through the broker to the inbox its pinned fingerprint names.
    public var via: Via = .http

    public enum Via: String, Sendable, Equatable { case http, broker }

    public init(name: String, url: String, token: String, acceptToken: String = "", fingerprint: String? = nil, source: String? = nil) {
        self.name = name; self.url = url; self.token = token; self.acceptToken = acceptToken; self.fingerprint = fingerprint
        self.source = source
    }
}

/// The MQTT broker(s) that carry signalling between devices with no port forward
/// (`[broker]`): one outbound TLS connection to the first that answers.
public struct BrokerConfig: Sendable, Equatable {
    /// In order of preference: the next is tried when one fails.
    public var urls: [BrokerURL] = []
    /// PEM CAs that sign the brokers' certificates (`mqtts`); nil: the system's store.
    public var ca: String?
    /// A client certificate and key (PEM) to authenticate with, instead of or besides a
    /// username and password.
    public var certificate: String?
    public var key: String?
    public var username: String?
    public var password: String?
    /// Topics are `PREFIX/inbox/FINGERPRINT` and `PREFIX/presence/FINGERPRINT`.
    public var topicPrefix = "videophone"
    public var keepaliveSeconds = 60
    /// How far a message's timestamp may be from our clock (replays older than this fail
    /// on the timestamp; newer ones on the nonce).
    public var replayWindowSeconds = 30
    /// Keep a second connection up to another broker of the list (`standby`): signalling
    /// moves to it at once when the first broker dies. Two broker connections per device.
    public var standby = false
    public init() {}
}

/// A pairing code this device handed out (`videophonectl pair-code`) whose other half
/// (`videophonectl add-peer`) has not come yet: kept as a `[[pending]]` drop-in.
public struct PendingPairing: Sendable, Equatable {
    /// Short id (hex), also in the drop-in's file name `pending-ID.toml`.
    public var id: String
    /// The token the peer will present when it calls us.
    public var acceptToken: String
    /// The drop-in file.
    public var file: String
}

/// A TURN server: `turn:HOST:PORT?transport=udp|tcp` or `turns:HOST:PORT` (TLS).
public struct TURNConfig: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    /// `udp`, `tcp` or `tls`.
    public var transport: String
    public var username: String
    public var credential: String
    /// `turns:` only: a PEM file of the CAs to trust for the server's certificate (which
    /// must name the server's IP address); nil: the system's CA store.
    public var ca: String? = nil
    /// coturn's `use-auth-secret` (the TURN REST scheme): a shared secret instead of a fixed
    /// credential. Each call then uses the username `EXPIRY:USERNAME` and the credential
    /// base64(HMAC-SHA1(secret, that username)), valid for ``ttlSeconds``.
    public var secret: String? = nil
    public var ttlSeconds = 86_400

    /// Parses a TURN URI (RFC 7065), numeric hosts only.
    static func parse(_ uri: String) -> (host: String, port: UInt16, transport: String)? {
        let secure = uri.hasPrefix("turns:")
        guard secure || uri.hasPrefix("turn:") else { return nil }
        var rest = Substring(uri.dropFirst(secure ? 6 : 5))
        var transport = secure ? "tls" : "udp"
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = rest[..<q]
            guard query.hasPrefix("transport=") else { return nil }
            let t = query.dropFirst("transport=".count).lowercased()
            guard t == "udp" || t == "tcp" else { return nil }
            transport = secure ? "tls" : t
        }
        let hostPort = String(rest)
        if let (h, p) = splitHostPort(hostPort) { return TransportAddress(host: h, port: p) == nil ? nil : (h, p, transport) }
        return TransportAddress(host: hostPort, port: 0) == nil ? nil : (hostPort, secure ? 5349 : 3478, transport)
    }
}

/// A GPIO line as the config names it: a line name (`"call-button"`) or an offset on
/// `gpio.chip`.
public enum GPIOLineName: Sendable, Equatable, CustomStringConvertible {
    case named(String)
    case offset(Int)
    public var description: String {
        switch self { case .named(let n): "'\(n)'"; case .offset(let o): "offset \(o)" }
    }
}

/// The board's call button and LED (`[gpio]`). Absent: no GPIO, the LED is simulated
/// and the button is `videophonectl press`.
public struct GPIOConfig: Sendable, Equatable {
    /// `gpiochip0`, `/dev/gpiochip0` or the chip's label; needed for offsets, optional for names.
    public var chip: String?
    public var button: GPIOLineName?
    /// The usual wiring (button to ground, pull-up): pressed reads low.
    public var buttonActiveLow = true
    /// `pull-up`, `pull-down`, `none` or `as-is` (leave the firmware's setting).
    public var buttonBias = "pull-up"
    public var debounceMs = 30
    public var callLED: GPIOLineName?
    public var ledActiveLow = false
    public init() {}
}

/// The device's provisioning, read from one TOML file. See README.md for the schema.
public struct DeviceConfig: Sendable, Equatable {
    public var name = "videophone"
    public var stateDirectory = "/var/lib/videophone"
    public var autoAnswer = false
    /// How long an incoming call rings before it counts as missed.
    public var ringTimeoutSeconds = 30
    /// Where `/metrics` listens (`host:port`); nil serves it on the signalling port.
    public var metricsListen: String? = nil
    public var signallingHost = "0.0.0.0"
    public var signallingPort: UInt16 = 8080
    /// Bearer token callers must present; empty refuses every call.
    public var signallingToken = ""
    /// The URL peers reach this device at (`signalling.url`), for pairing codes; nil: made
    /// from `signalling.listen` or the first address.
    public var signallingURL: String? = nil
    public var controlSocket = "/run/videophone/control.sock"
    /// Host candidate addresses; nil means every interface that is up.
    public var networkAddresses: [String]? = nil
    public var includeLoopback = false
    /// Offer host candidates as mDNS `.local` names.
    public var mdns = false
    /// Send our candidates after the offer/answer (PATCH) instead of inside it.
    public var trickle = false
    /// STUN servers (`host:port`, numeric) for server-reflexive candidates.
    public var stunServers: [String] = []
    /// TURN servers for relayed candidates.
    public var turnServers: [TURNConfig] = []
    public var videoSource = "test-pattern"
    /// The V4L2 device for `video.source = "v4l2"`.
    public var videoDevice = "/dev/video0"
    public var videoWidth = 1280
    public var videoHeight = 720
    public var videoFPS = 30
    public var videoBitrateKbps = 2000
    /// `auto` (a hardware H.264 encoder when the board has one, else x264), `x264`, `v4l2`.
    public var videoEncoder = "auto"
    /// The mem2mem encoder's node for `v4l2`; nil finds it.
    public var videoEncoderDevice: String? = nil
    /// With a screen: `auto` (the board's V4L2 H.264 decoder when it has one, else
    /// libavcodec), `libavcodec`, `v4l2`.
    public var videoDecoder = "auto"
    /// The mem2mem decoder's node for `v4l2`; nil finds it.
    public var videoDecoderDevice: String? = nil
    /// The screen (`[display]`): `none` (no screen: received video is not decoded),
    /// `simulated` (an off-screen framebuffer, for `videophonectl screenshot`), `drm`.
    public var displayOutput = "none"
    /// The DRM device for `output = "drm"`.
    public var displayDevice = "/dev/dri/card0"
    /// The connector by name (`HDMI-A-1`); nil: the first connected one.
    public var displayConnector: String? = nil
    /// The mode, `WIDTHxHEIGHT` or `WIDTHxHEIGHT@HZ`; nil: the connector's preferred mode
    /// (the simulated screen: 1280x720).
    public var displayMode: DisplayMode? = nil
    /// Seconds without a call or a button press before the screen blanks; 0: never.
    public var displayBlankAfterSeconds = 300
    public var audioSource = "tone"
    public var audioSink = "counting"
    /// ALSA device names for `audio.source = "alsa"` / `audio.sink = "alsa"`.
    public var audioCaptureDevice = "default"
    public var audioPlaybackDevice = "default"
    /// The microphone's processing stage; nil: on for a real or simulated microphone
    /// that hears the speaker (`alsa`, `talker`), off for the tone.
    public var audioEchoCancellation: Bool? = nil
    public var audioNoiseSuppression: Bool? = nil
    public var audioGainControl: Bool? = nil
    /// `low`, `moderate`, `high` (how hard residual echo is suppressed).
    public var audioEchoCancellationLevel = "moderate"
    /// `low`, `moderate`, `high`, `very-high`.
    public var audioNoiseSuppressionLevel = "moderate"
    /// The level the gain control aims for, dB below full scale (0...31).
    public var audioGainControlLevel = 3
    /// `audio.source = "talker"` (simulator): the near-end talker (a 16-bit mono WAV,
    /// e.g. from espeak-ng) and the echo path from the device's own speaker.
    public var audioTalkerFile: String? = nil
    public var audioEchoDelayMs = 60
    public var audioEchoAttenuationDB = 6

    /// The stage's settings as configured (defaults applied).
    public var audioProcessing: AudioProcessingSettings {
        let onByDefault = audioSource == "alsa" || audioSource == "talker"
        var s = AudioProcessingSettings()
        s.echoCancellation = audioEchoCancellation ?? onByDefault
        s.noiseSuppression = audioNoiseSuppression ?? onByDefault
        s.gainControl = audioGainControl ?? onByDefault
        s.echoLevel = AudioProcessingSettings.EchoLevel(rawValue: audioEchoCancellationLevel) ?? .moderate
        s.noiseLevel = AudioProcessingSettings.NoiseLevel(rawValue: audioNoiseSuppressionLevel) ?? .moderate
        s.gainTargetDBFS = audioGainControlLevel
        return s
    }
    public var gpio: GPIOConfig? = nil
    public var peers: [PeerConfig] = []
    /// Signalling through an MQTT broker (`[broker]`); nil: HTTP only.
    public var broker: BrokerConfig? = nil
    /// The board profile named by `device.board`, if any.
    public var board: String? = nil
    /// Pairing codes handed out and not completed yet (`peers.d/pending-*.toml`).
    public var pendingPairings: [PendingPairing] = []
    /// The drop-in files read, in order.
    public var dropIns: [String] = []

    public init() {}

    /// Where `device.board = "NAME"` looks for `NAME.toml` (`VIDEOPHONE_BOARDS_DIR` overrides).
    public static var boardsDirectory: String {
        getenv("VIDEOPHONE_BOARDS_DIR").map { String(cString: $0) } ?? "/usr/share/videophone/boards"
    }

    /// The tables a board profile may set: the hardware, never identity, peers or secrets.
    static let profileTables: Set<String> = ["video", "audio", "gpio"]

    /// Reads and validates `path`, then the `peers.d/*.toml` drop-ins beside it (see
    /// ``DropIns``). Errors name the file, line and key.
    public static func load(path: String, boardsDirectory: String = DeviceConfig.boardsDirectory) throws(ConfigError) -> DeviceConfig {
        var c = try parse(readText(path), file: path, boardsDirectory: boardsDirectory)
        for file in DropIns.files(beside: path) {
            let entries = try TOMLReader.parse(readText(file), file: file)
            if let e = entries.first(where: { !DropIns.tables.contains($0.table) }) {
                throw ConfigError(file: file, line: e.line, key: TOMLReader.displayKey(e.table, e.key),
                                  problem: "a peers.d drop-in sets only [[peer]] (and [[pending]])")
            }
            c = try apply(entries, file: file, onto: c)
            c.dropIns.append(file)
        }
        return c
    }

    static func readText(_ path: String) throws(ConfigError) -> String {
        guard let f = fopen(path, "r") else {
            throw ConfigError(file: path, line: nil, key: nil, problem: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes += buf[0..<n]
            if bytes.count > 1 << 20 { throw ConfigError(file: path, line: nil, key: nil, problem: "file larger than 1 MiB") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, line: nil, key: nil, problem: "not valid UTF-8")
        }
        return text
    }

    /// Validates TOML text; `file` is used in error messages. With `device.board`, the
    /// board profile's `[video]`, `[audio]` and `[gpio]` come first and the file's own
    /// keys override them.
    public static func parse(_ text: String, file: String, boardsDirectory: String = DeviceConfig.boardsDirectory) throws(ConfigError) -> DeviceConfig {
        let entries = try TOMLReader.parse(text, file: file)
        if let e = entries.first(where: { $0.table == "pending" }) {
            throw ConfigError(file: file, line: e.line, key: TOMLReader.displayKey(e.table, e.key),
                              problem: "[[pending]] belongs in peers.d (videophonectl pair-code writes it)")
        }
        var base = DeviceConfig()
        if let b = entries.first(where: { $0.table == "device" && $0.key == "board" }) {
            guard case .string(let name) = b.value, !name.isEmpty else {
                throw ConfigError(file: file, line: b.line, key: "device.board", problem: "expected a board profile name or path, got \(b.value.typeName)")
            }
            let path = name.contains("/") ? name : "\(boardsDirectory)/\(name).toml"
            let profileText: String
            do { profileText = try readText(path) } catch {
                throw ConfigError(file: file, line: b.line, key: "device.board", problem: "no board profile '\(name)' (\(path): \(error.problem))")
            }
            let profile = try TOMLReader.parse(profileText, file: path)
            if let e = profile.first(where: { !profileTables.contains($0.table) }) {
                throw ConfigError(file: path, line: e.line, key: TOMLReader.displayKey(e.table, e.key),
                                  problem: "a board profile sets only [video], [audio] and [gpio]")
            }
            base = try apply(profile, file: path, onto: base)
            base.board = name
        }
        return try apply(entries, file: file, onto: base)
    }

    /// Applies parsed entries onto `base` and validates the result.
    static func apply(_ entries: [TOMLEntry], file: String, onto base: DeviceConfig) throws(ConfigError) -> DeviceConfig {
        var c = base
        struct TURNEntry { var url: (String, UInt16, String)?; var username: String?; var credential: String?; var ca: String?; var line: Int
            var secret: String?; var ttl: Int? }
        var turns: [Int: TURNEntry] = [:]
        struct PeerEntry { var name: String?; var url: String?; var token: String?; var acceptToken: String?; var fingerprint: String?; var line: Int; var nameLine: Int?
            var via: PeerConfig.Via?; var viaLine: Int? }
        var brokerLine: Int?
        var standbyLine: Int?
        func readablePath(_ e: TOMLEntry) throws(ConfigError) -> String {
            let path = try string(e)
            guard !path.isEmpty else { throw err(e, "expected a file path") }
            guard access(path, R_OK) == 0 else { throw err(e, "cannot read '\(path)': \(String(cString: strerror(errno)))") }
            return path
        }
        var peers: [Int: PeerEntry] = [:]
        struct PendingEntry { var id: String?; var acceptToken: String?; var line: Int }
        var pending: [Int: PendingEntry] = [:]
        var sizeLine: Int?
        func err(_ e: TOMLEntry, _ problem: String) -> ConfigError {
            ConfigError(file: file, line: e.line, key: TOMLReader.displayKey(e.table, e.key), problem: problem)
        }
        func string(_ e: TOMLEntry) throws(ConfigError) -> String {
            guard case .string(let s) = e.value else { throw err(e, "expected a string, got \(e.value.typeName)") }
            return s
        }
        func int(_ e: TOMLEntry, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
            guard case .integer(let i) = e.value else { throw err(e, "expected an integer, got \(e.value.typeName)") }
            guard range.contains(i) else { throw err(e, "\(i) is out of range \(range.lowerBound)...\(range.upperBound)") }
            return i
        }
        func bool(_ e: TOMLEntry) throws(ConfigError) -> Bool {
            guard case .boolean(let b) = e.value else { throw err(e, "expected true or false, got \(e.value.typeName)") }
            return b
        }
        func oneOf(_ e: TOMLEntry, _ allowed: [String]) throws(ConfigError) -> String {
            let s = try string(e)
            guard allowed.contains(s) else { throw err(e, "'\(s)' is not one of \(allowed.joined(separator: ", "))") }
            return s
        }
        var gpioLine: Int?
        var talkerLine: Int?
        func line(_ e: TOMLEntry) throws(ConfigError) -> GPIOLineName {
            gpioLine = gpioLine ?? e.line
            switch e.value {
            case .string(let s) where !s.isEmpty: return .named(s)
            case .integer(let i) where (0...1023).contains(i): return .offset(i)
            default: throw err(e, "expected a line name (\"call-button\") or an offset (17), got \(e.value.typeName)")
            }
        }
        for e in entries {
            switch (e.table, e.key) {
            case ("device", "name"): c.name = try string(e)
            case ("device", "state_directory"): c.stateDirectory = try string(e)
            case ("device", "auto_answer"): c.autoAnswer = try bool(e)
            case ("device", "ring_timeout_s"): c.ringTimeoutSeconds = try int(e, 5...600)
            case ("device", "board"): continue  // read first, by parse
            case ("metrics", "listen"):
                let s = try string(e)
                if s.isEmpty { c.metricsListen = nil; continue }
                guard let (host, port) = splitHostPort(s), TransportAddress(host: host, port: port) != nil else {
                    throw err(e, "expected a numeric 'host:port' (or \"\" to serve /metrics on the signalling port), got '\(s)'")
                }
                c.metricsListen = s
            case ("signalling", "listen"):
                let s = try string(e)
                guard let (host, port) = splitHostPort(s) else { throw err(e, "expected 'host:port', got '\(s)'") }
                guard TransportAddress(host: host, port: port) != nil else { throw err(e, "'\(host)' is not a numeric IP address") }
                c.signallingHost = host
                c.signallingPort = port
            case ("signalling", "token"): c.signallingToken = try string(e)
            case ("signalling", "url"):
                let u = try string(e)
                guard URLParts(u) != nil else { throw err(e, "expected 'http://host:port' (how peers reach this device), got '\(u)'") }
                c.signallingURL = u
            case ("control", "socket"): c.controlSocket = try string(e)
            case ("network", "addresses"):
                guard case .array(let items) = e.value else { throw err(e, "expected an array of addresses") }
                var list: [String] = []
                for item in items {
                    guard case .string(let s) = item, TransportAddress(host: s, port: 0) != nil else {
                        throw err(e, "'\(item)' is not a numeric IP address")
                    }
                    list.append(s)
                }
                c.networkAddresses = list
            case ("network", "include_loopback"): c.includeLoopback = try bool(e)
            case ("network", "mdns"): c.mdns = try bool(e)
            case ("network", "trickle"): c.trickle = try bool(e)
            case ("ice", "stun_servers"):
                guard case .array(let items) = e.value else { throw err(e, "expected an array of \"host:port\"") }
                var list: [String] = []
                for item in items {
                    guard case .string(let s) = item, let (h, p) = splitHostPort(s), TransportAddress(host: h, port: p) != nil else {
                        throw err(e, "'\(item)' is not a numeric \"host:port\"")
                    }
                    list.append(s)
                }
                c.stunServers = list
            case ("video", "source"): c.videoSource = try oneOf(e, ["test-pattern", "v4l2", "none"])
            case ("video", "device"): c.videoDevice = try string(e)
            case ("video", "width"): c.videoWidth = try int(e, 160...3840); sizeLine = e.line
            case ("video", "height"): c.videoHeight = try int(e, 120...2160); sizeLine = e.line
            case ("video", "fps"): c.videoFPS = try int(e, 1...60)
            case ("video", "bitrate_kbps"): c.videoBitrateKbps = try int(e, 50...20000)
            case ("video", "encoder"): c.videoEncoder = try oneOf(e, ["auto", "x264", "v4l2"])
            case ("video", "encoder_device"): c.videoEncoderDevice = try string(e)
            case ("video", "decoder"): c.videoDecoder = try oneOf(e, ["auto", "libavcodec", "v4l2"])
            case ("video", "decoder_device"): c.videoDecoderDevice = try string(e)
            case ("display", "output"): c.displayOutput = try oneOf(e, ["none", "simulated", "drm"])
            case ("display", "device"):
                let d = try string(e)
                guard d.hasPrefix("/") else { throw err(e, "expected a device path like \"/dev/dri/card0\", got '\(d)'") }
                c.displayDevice = d
            case ("display", "connector"):
                let n = try string(e)
                guard !n.isEmpty, n.utf8.count <= 32, n.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                    throw err(e, "expected a connector name like \"HDMI-A-1\" (`modetest -c` lists them), got '\(n)'")
                }
                c.displayConnector = n
            case ("display", "mode"):
                let m = try string(e)
                guard let mode = DisplayMode(m) else { throw err(e, "expected \"WIDTHxHEIGHT\" or \"WIDTHxHEIGHT@HZ\" (e.g. \"1280x720@60\"), got '\(m)'") }
                c.displayMode = mode
            case ("display", "blank_after_s"): c.displayBlankAfterSeconds = try int(e, 0...86_400)
            case ("audio", "source"): c.audioSource = try oneOf(e, ["alsa", "tone", "talker", "none"])
            case ("audio", "echo_cancellation"): c.audioEchoCancellation = try bool(e)
            case ("audio", "noise_suppression"): c.audioNoiseSuppression = try bool(e)
            case ("audio", "gain_control"): c.audioGainControl = try bool(e)
            case ("audio", "echo_cancellation_level"):
                c.audioEchoCancellationLevel = try oneOf(e, AudioProcessingSettings.EchoLevel.allCases.map(\.rawValue))
            case ("audio", "noise_suppression_level"):
                c.audioNoiseSuppressionLevel = try oneOf(e, AudioProcessingSettings.NoiseLevel.allCases.map(\.rawValue))
            case ("audio", "gain_control_level"): c.audioGainControlLevel = try int(e, 0...31)
            case ("audio", "talker_file"): c.audioTalkerFile = try string(e); talkerLine = e.line
            case ("audio", "echo_delay_ms"): c.audioEchoDelayMs = try int(e, 0...500)
            case ("audio", "echo_attenuation_db"): c.audioEchoAttenuationDB = try int(e, 0...80)
            case ("audio", "sink"): c.audioSink = try oneOf(e, ["alsa", "counting"])
            case ("gpio", "chip"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.chip = try string(e)
            case ("gpio", "button"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.button = try line(e)
            case ("gpio", "button_active_low"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.buttonActiveLow = try bool(e)
            case ("gpio", "button_bias"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.buttonBias = try oneOf(e, ["pull-up", "pull-down", "none", "as-is"])
            case ("gpio", "debounce_ms"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.debounceMs = try int(e, 1...500)
            case ("gpio", "call_led"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.callLED = try line(e)
            case ("gpio", "led_active_low"): c.gpio = c.gpio ?? GPIOConfig(); c.gpio!.ledActiveLow = try bool(e)
            case ("audio", "capture_device"): c.audioCaptureDevice = try string(e)
            case ("audio", "playback_device"): c.audioPlaybackDevice = try string(e)
            case ("turn", "url"):
                let u = try string(e)
                guard let parsed = TURNConfig.parse(u) else {
                    throw err(e, "expected 'turn:HOST:PORT?transport=udp|tcp' or 'turns:HOST:PORT' with a numeric host, got '\(u)'")
                }
                turns[e.tableIndex, default: TURNEntry(line: e.line)].url = parsed
            case ("turn", "username"): turns[e.tableIndex, default: TURNEntry(line: e.line)].username = try string(e)
            case ("turn", "credential"): turns[e.tableIndex, default: TURNEntry(line: e.line)].credential = try string(e)
            case ("turn", "ca"): turns[e.tableIndex, default: TURNEntry(line: e.line)].ca = try string(e)
            case ("turn", "secret"):
                let sec = try string(e)
                guard !sec.isEmpty else { throw err(e, "expected the shared secret of the server's static-auth-secret") }
                turns[e.tableIndex, default: TURNEntry(line: e.line)].secret = sec
            case ("turn", "ttl_s"): turns[e.tableIndex, default: TURNEntry(line: e.line)].ttl = try int(e, 60...604_800)
            case ("peer", "name"):
                let n = try string(e)
                guard !n.isEmpty else { throw err(e, "a peer needs a name") }
                peers[e.tableIndex, default: PeerEntry(line: e.line)].name = n
                peers[e.tableIndex]!.nameLine = e.line
            case ("pending", "id"): pending[e.tableIndex, default: PendingEntry(line: e.line)].id = try string(e)
            case ("pending", "accept_token"): pending[e.tableIndex, default: PendingEntry(line: e.line)].acceptToken = try string(e)
            case ("pending", "created"):
                guard case .dateTime = e.value else { throw err(e, "expected a date-time, got \(e.value.typeName)") }
            case ("peer", "url"):
                let u = try string(e)
                guard URLParts(u) != nil else { throw err(e, "expected 'http://host:port', got '\(u)'") }
                peers[e.tableIndex, default: PeerEntry(line: e.line)].url = u
            case ("peer", "token"): peers[e.tableIndex, default: PeerEntry(line: e.line)].token = try string(e)
            case ("peer", "via"):
                let v = try oneOf(e, ["http", "broker"])
                peers[e.tableIndex, default: PeerEntry(line: e.line)].via = PeerConfig.Via(rawValue: v)
                peers[e.tableIndex]!.viaLine = e.line
            case ("broker", "urls"):
                brokerLine = brokerLine ?? e.line
                guard case .array(let items) = e.value, !items.isEmpty else { throw err(e, "expected a non-empty array of \"mqtts://HOST:PORT\"") }
                var list: [BrokerURL] = []
                for item in items {
                    guard case .string(let u) = item else { throw err(e, "expected strings, got \(item.typeName)") }
                    guard let url = BrokerURL(u) else { throw err(e, "'\(u)' is not \"mqtts://HOST:PORT\" (TLS) or \"mqtt://HOST:PORT\"") }
                    guard !list.contains(url) else { throw err(e, "'\(url)' is listed twice") }
                    list.append(url)
                }
                guard list.count <= 16 else { throw err(e, "at most 16 brokers") }
                c.broker = c.broker ?? BrokerConfig(); c.broker!.urls = list
            case ("broker", "ca"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.ca = try readablePath(e)
            case ("broker", "certificate"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.certificate = try readablePath(e)
            case ("broker", "key"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.key = try readablePath(e)
            case ("broker", "username"):
                brokerLine = brokerLine ?? e.line
                let u = try string(e)
                guard !u.isEmpty, u.utf8.count <= 256 else { throw err(e, "expected 1 to 256 bytes") }
                c.broker = c.broker ?? BrokerConfig(); c.broker!.username = u
            case ("broker", "password"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.password = try string(e)
            case ("broker", "topic_prefix"):
                brokerLine = brokerLine ?? e.line
                let t = try string(e)
                guard !t.isEmpty, t.utf8.count <= 64, !t.hasPrefix("/"), !t.hasSuffix("/"), !t.contains("+"), !t.contains("#"), !t.contains("//"),
                      !t.unicodeScalars.contains(where: { $0.value < 0x21 }) else {
                    throw err(e, "expected a topic like \"videophone\" or \"fleet/eu\" (no + or #, no leading, trailing or double /, no spaces)")
                }
                c.broker = c.broker ?? BrokerConfig(); c.broker!.topicPrefix = t
            case ("broker", "keepalive_s"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.keepaliveSeconds = try int(e, 5...3600)
            case ("broker", "standby"):
                brokerLine = brokerLine ?? e.line; standbyLine = e.line
                c.broker = c.broker ?? BrokerConfig(); c.broker!.standby = try bool(e)
            case ("broker", "replay_window_s"): brokerLine = brokerLine ?? e.line; c.broker = c.broker ?? BrokerConfig(); c.broker!.replayWindowSeconds = try int(e, 5...600)
            case ("peer", "accept_token"): peers[e.tableIndex, default: PeerEntry(line: e.line)].acceptToken = try string(e)
            case ("peer", "fingerprint"):
                let f = try string(e)
                let parts = f.split(separator: " ")
                guard parts.count == 2, ["sha-1", "sha-256", "sha-384", "sha-512"].contains(parts[0].lowercased()),
                      let d = Hex.decode(String(parts[1])), d.count >= 20 else {
                    throw err(e, "expected 'sha-256 AB:CD:...' (as `videophonectl identity` prints it)")
                }
                peers[e.tableIndex, default: PeerEntry(line: e.line)].fingerprint = f
            default:
                let known = ["device", "signalling", "control", "network", "ice", "turn", "video", "audio", "display", "gpio", "peer", "metrics", "pending", "broker"]
                if e.table.isEmpty { throw err(e, "unknown key at top level (keys belong in a [table])") }
                if !known.contains(e.table) { throw err(e, "unknown table [\(e.table)]") }
                throw err(e, "unknown key")
            }
        }
        for i in peers.keys.sorted() {
            let p = peers[i]!
            guard let name = p.name else { throw ConfigError(file: file, line: p.line, key: "peer.name", problem: "peer #\(i + 1) has no name") }
            let via = p.via ?? .http
            guard let url = p.url ?? (via == .broker ? "" : nil) else {
                throw ConfigError(file: file, line: p.line, key: "peer.url", problem: "peer '\(name)' has no url (or set via = \"broker\")")
            }
            if via == .broker {
                guard let f = p.fingerprint, f.lowercased().hasPrefix("sha-256 ") else {
                    throw ConfigError(file: file, line: p.viaLine ?? p.line, key: "peer.via",
                                      problem: "peer '\(name)' is reached through the broker, which needs its sha-256 fingerprint pinned (peer.fingerprint)")
                }
            }
            let here = "\(file):\(p.nameLine ?? p.line)"
            if let other = c.peers.first(where: { $0.name == name }) {
                throw ConfigError(file: file, line: p.nameLine ?? p.line, key: "peer.name",
                                  problem: "peer '\(name)' defined twice: here and at \(other.source ?? file)")
            }
            var peer = PeerConfig(name: name, url: url, token: p.token ?? "", acceptToken: p.acceptToken ?? "", fingerprint: p.fingerprint, source: here)
            peer.via = via
            c.peers.append(peer)
        }
        for i in pending.keys.sorted() {
            let p = pending[i]!
            guard let id = p.id, let token = p.acceptToken, !token.isEmpty else {
                throw ConfigError(file: file, line: p.line, key: "pending.accept_token", problem: "a pending pairing needs id and accept_token")
            }
            c.pendingPairings.append(PendingPairing(id: id, acceptToken: token, file: file))
        }
        for i in turns.keys.sorted() {
            let t = turns[i]!
            guard let (h, p, transport) = t.url else { throw ConfigError(file: file, line: t.line, key: "turn.url", problem: "TURN server #\(i + 1) has no url") }
            if let secret = t.secret {
                guard t.credential == nil else {
                    throw ConfigError(file: file, line: t.line, key: "turn.credential", problem: "TURN server #\(i + 1): a credential or a secret, not both")
                }
                var turn = TURNConfig(host: h, port: p, transport: transport, username: t.username ?? "", credential: "", ca: t.ca)
                turn.secret = secret
                turn.ttlSeconds = t.ttl ?? turn.ttlSeconds
                c.turnServers.append(turn)
                continue
            }
            guard let user = t.username, let cred = t.credential else {
                throw ConfigError(file: file, line: t.line, key: "turn.username", problem: "TURN server #\(i + 1) needs username and credential (or a secret)")
            }
            c.turnServers.append(TURNConfig(host: h, port: p, transport: transport, username: user, credential: cred, ca: t.ca))
        }
        if let b = c.broker, brokerLine != nil {
            if b.urls.isEmpty { throw ConfigError(file: file, line: brokerLine, key: "broker.urls", problem: "[broker] needs urls (\"mqtts://HOST:PORT\", ...)") }
            if (b.certificate == nil) != (b.key == nil) {
                throw ConfigError(file: file, line: brokerLine, key: b.certificate == nil ? "broker.certificate" : "broker.key",
                                  problem: "a client certificate needs its key, and a key its certificate")
            }
            if b.password != nil && b.username == nil {
                throw ConfigError(file: file, line: brokerLine, key: "broker.username", problem: "a password needs a username")
            }
            if b.urls.contains(where: { !$0.tls }) && (b.password != nil || b.certificate != nil) {
                throw ConfigError(file: file, line: brokerLine, key: "broker.urls",
                                  problem: "credentials would cross the network in the clear: use mqtts:// for every broker")
            }
            if b.standby && Set(b.urls.map(\.description)).count < 2 {
                throw ConfigError(file: file, line: standbyLine ?? brokerLine, key: "broker.standby",
                                  problem: "a standby connection needs a second broker in urls (it keeps one up to another broker)")
            }
            if b.urls.allSatisfy({ !$0.tls }) && b.ca != nil {
                throw ConfigError(file: file, line: brokerLine, key: "broker.ca", problem: "a CA is only used with mqtts:// brokers")
            }
        }
        if c.broker == nil, let p = peers.values.first(where: { $0.via == .broker }) {
            throw ConfigError(file: file, line: p.viaLine ?? p.line, key: "peer.via", problem: "via = \"broker\" needs a [broker] table with urls")
        }
        if let g = c.gpio {
            for (key, l) in [("gpio.button", g.button), ("gpio.call_led", g.callLED)] {
                if case .offset = l, g.chip == nil {
                    throw ConfigError(file: file, line: gpioLine, key: key, problem: "an offset needs gpio.chip (or name the line instead)")
                }
            }
        }
        if c.audioSource == "talker" && c.audioTalkerFile == nil {
            throw ConfigError(file: file, line: talkerLine, key: "audio.talker_file",
                              problem: "audio.source = \"talker\" needs a talker_file (a 16-bit mono WAV, e.g. from espeak-ng -w)")
        }
        if c.videoWidth % 2 != 0 || c.videoHeight % 2 != 0 {
            throw ConfigError(file: file, line: sizeLine, key: c.videoWidth % 2 != 0 ? "video.width" : "video.height",
                              problem: "must be even (\(c.videoWidth)x\(c.videoHeight))")
        }
        return c
    }
}

/// `host:port` or `[v6]:port`.
func splitHostPort(_ s: String) -> (String, UInt16)? {
    if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
        let host = String(s[s.index(after: s.startIndex)..<close])
        let rest = s[s.index(after: close)...]
        guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
        return (host, port)
    }
    guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
    return (String(s[..<colon]), port)
}

/// The parts of an `http://host:port/path` URL.
struct URLParts {
    var host: String
    var port: UInt16
    var path: String

    init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let hostPort = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(hostPort.count)
        if let (h, p) = splitHostPort(String(hostPort)) {
            host = h; port = p
        } else if !hostPort.isEmpty, !hostPort.contains(":") {
            host = String(hostPort); port = 80
        } else {
            return nil
        }
        self.path = path.isEmpty ? "" : String(path)
    }
}

/// A display mode from the config: `1280x720` or `1280x720@60`.
public struct DisplayMode: Sendable, Equatable, CustomStringConvertible {
    public var width: Int
    public var height: Int
    /// Nil: any refresh rate (the highest the connector offers at that size).
    public var refreshHz: Int?

    public init(width: Int, height: Int, refreshHz: Int? = nil) { self.width = width; self.height = height; self.refreshHz = refreshHz }

    /// Parses `WxH` or `WxH@HZ` (sizes 160…7680 × 120…4320, 1…240 Hz).
    public init?(_ text: String) {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        let size = parts[0].split(separator: "x", omittingEmptySubsequences: false)
        guard size.count == 2, let w = Int(size[0]), let h = Int(size[1]), (160...7680).contains(w), (120...4320).contains(h) else { return nil }
        var hz: Int?
        if parts.count == 2 {
            guard let r = Int(parts[1]), (1...240).contains(r) else { return nil }
            hz = r
        }
        self.init(width: w, height: h, refreshHz: hz)
    }

    public var description: String { "\(width)x\(height)" + (refreshHz.map { "@\($0)" } ?? "") }
}
