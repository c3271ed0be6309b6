import CallControl
import Codecs
import DTLS
import Logging
import MediaDevices
import MediaDevicesLinux
import NetworkCore
import PeerConnection
import SDP
#if canImport(Glibc)
import Glibc
#endif

/// Why a call request was refused, with the HTTP status that says so.
public struct CallError: Error, CustomStringConvertible {
    public var status: Int
    public var description: String
    public init(status: Int, _ description: String) { self.status = status; self.description = description }
}

/// Who presented a valid bearer token.
enum Caller {
    /// A provisioned peer (its `accept_token`), possibly with a pinned fingerprint.
    case peer(PeerConfig)
    /// Anyone holding the device's guest token (`signalling.token`), e.g. a browser.
    case guest
}

/// The device: owns its identity, answers and places calls, and reports status.
///
/// Call control goes through one ``CallStateMachine`` under one lock: button presses,
/// control commands, signalling and media events in, actions out. The media and
/// transport of the current call run on their own threads.
public final class Device: @unchecked Sendable {
    private var _config: DeviceConfig
    let logger: Logger
    public let identity: DTLSCertificate
    let dtls: DTLSContext
    let lock = Lock()
    private var machine: CallStateMachine
    private var call: ActiveCall?
    private var lastCall: CallSummary?
    /// Lights the call LED; the simulated board keeps the pattern for status.
    public let leds: any CallLED
    let metrics: DeviceMetrics
    let rateLimiter = RateLimiter()
    /// Parts of the board that are failing right now; the LED shows the most important.
    private var faults: Set<DeviceFault> = []

    /// Records that a part failed or works again, and updates the LED.
    public func report(_ fault: DeviceFault, failing: Bool) {
        let actions = lock.withLock { () -> [CallAction] in
            if failing { faults.insert(fault) } else { faults.remove(fault) }
            return machine.setFault(faults.min()?.pattern)
        }
        for a in actions { if case .setLED(let p) = a { leds.show(p) } }
    }

    public var currentFaults: [DeviceFault] { lock.withLock { faults.sorted() } }

    /// Opens and closes the configured camera, microphone and speaker once (at start), so
    /// a missing part shows on the LED before anyone tries to call.
    public func checkParts() {
        let c = config
        if c.videoSource == "v4l2" { _ = openCamera(c) }
        if c.audioSource == "alsa" { _ = openMicrophone(c) }
        if c.audioSink == "alsa" { _ = openSpeaker(c) }
    }

    /// While idle, parts that failed are tried again (every 5 s), so the LED and status
    /// clear as soon as one is back; calls open their devices anew anyway.
    func probeFailedParts() {
        guard case .idle = phase else { return }
        let failing = lock.withLock { faults }
        let c = config
        for part in failing.sorted() {
            let back: String? = switch part {
            case .camera where c.videoSource == "v4l2": openCamera(c, quietly: true).map { _ in c.videoDevice }
            case .microphone where c.audioSource == "alsa": openMicrophone(c, quietly: true).map { _ in c.audioCaptureDevice }
            case .speaker where c.audioSink == "alsa": openSpeaker(c, quietly: true).map { _ in c.audioPlaybackDevice }
            default: nil
            }
            if let device = back { logger.info("\(part.rawValue) back", metadata: ["device": "\(device)"]) }
        }
    }

    /// Opens one part of the board. Either way the fault list learns the outcome; a
    /// failure is logged with the device and the reason unless `quietly` (idle retries).
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

    func openCamera(_ c: DeviceConfig, quietly: Bool = false) -> V4L2Camera? {
        open(.camera, c.videoDevice, unavailable: "camera unavailable; calls carry audio only", quietly: quietly) {
            try V4L2Camera(device: c.videoDevice, width: c.videoWidth, height: c.videoHeight, fps: c.videoFPS)
        }
    }

    func openMicrophone(_ c: DeviceConfig, quietly: Bool = false) -> ALSACapture? {
        open(.microphone, c.audioCaptureDevice, unavailable: "microphone unavailable; calls go on without it", quietly: quietly) {
            try ALSACapture(device: c.audioCaptureDevice)
        }
    }

    func openSpeaker(_ c: DeviceConfig, quietly: Bool = false) -> ALSAPlayback? {
        open(.speaker, c.audioPlaybackDevice, unavailable: "speaker unavailable; received audio is decoded but not played", quietly: quietly) {
            try ALSAPlayback(device: c.audioPlaybackDevice)
        }
    }

    /// The camera a call uses, as the config names it. A camera that cannot be opened is
    /// logged and shown on the LED; the call goes on with what works (audio).
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

    /// The hardware encoder found at start (`video.encoder` = `auto` or `v4l2`): nil until
    /// looked for, then the path or none.
    private let hardwareEncoder = Locked<String??>(nil)

    /// Looks for the board's hardware H.264 encoder once (at start), logging what it found.
    @discardableResult
    public func detectEncoder() -> String? {
        if let known = hardwareEncoder.current { return known }
        let c = config
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
    func makeEncoder(_ settings: H264EncoderSettings) throws -> any VideoEncoder {
        if let path = detectEncoder() {
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

    /// The microphone a call uses, as the config names it (a busy or missing device is
    /// logged; the call goes on without it).
    func makeMicrophone(_ c: DeviceConfig) -> (any AudioSource)? {
        switch c.audioSource {
        case "tone": ToneSource()
        case "alsa": openMicrophone(c)
        default: nil
        }
    }

    /// The speaker a call plays to; falls back to counting when the device cannot open.
    func makeSpeaker(_ c: DeviceConfig) -> any AudioSink {
        guard c.audioSink == "alsa" else { return CountingAudioSink() }
        return openSpeaker(c) ?? CountingAudioSink()
    }
    /// Called with the phase name whenever it changes (sd_notify STATUS).
    public var onPhaseChange: (@Sendable (String) -> Void)?

    public var config: DeviceConfig { lock.withLock { _config } }

    final class ActiveCall: @unchecked Sendable {
        let id: String
        let peerName: String
        let outgoing: Bool
        let pc: PeerConnection
        let media: MediaSession
        /// For outgoing calls: the URL to DELETE on hang-up.
        var remoteResource: String?
        var remoteToken: String?
        /// Candidates the peer has had from us (in the offer/answer or a PATCH).
        var sentCandidates: Set<String> = []
        /// The negotiated video codec, e.g. `H264 profile-level-id=42e01f`.
        var videoCodec: String?
        var offerSentAt: Instant?
        /// Dropped because the peer's call won glare: its answers no longer matter.
        var abandoned = false
        init(id: String, peerName: String, outgoing: Bool, pc: PeerConnection, media: MediaSession) {
            self.id = id; self.peerName = peerName; self.outgoing = outgoing; self.pc = pc; self.media = media
        }
    }

    struct CallSummary {
        var id: String
        var peer: String
        var endReason: String
    }

    public init(config: DeviceConfig, identity: DTLSCertificate, logger: Logger, leds: any CallLED = SimulatedCallLED()) throws {
        self._config = config
        self.identity = identity
        self.logger = logger
        self.leds = leds
        self.metrics = DeviceMetrics()
        self.dtls = try DTLSContext(certificate: identity)
        self.machine = CallStateMachine(peers: config.peers.map(\.name), autoAnswer: config.autoAnswer,
                                        ringTimeout: .seconds(Int64(config.ringTimeoutSeconds)), now: Instant.now())
        let ifaces = (config.networkAddresses?.compactMap { TransportAddress(host: $0, port: 0) } ?? localInterfaceAddresses(includeLoopback: false))
            .filter { $0.family == .ipv4 && !$0.isLoopback }
        if ifaces.isEmpty {
            mdns = nil
        } else {
            do { mdns = try MDNSService(interfaces: ifaces) } catch {
                logger.warning("mDNS unavailable: .local candidates will rely on peer-reflexive discovery", metadata: ["REASON": "\(error)"])
                mdns = nil
            }
        }
        let usable = config.networkAddresses?.compactMap { TransportAddress(host: $0, port: 0) }
            ?? localInterfaceAddresses(includeLoopback: config.includeLoopback)
        if usable.isEmpty {
            faults.insert(.network)
            _ = machine.setFault(.errorNoNetwork)
            logger.error("no network address to call from", metadata: ["REASON": "no usable interface address"])
        }
        leds.show(machine.led)
        if config.networkAddresses == nil {
            addressMonitor = AddressMonitor(includeLoopback: config.includeLoopback) { [weak self] addresses in
                guard let self else { return }
                let list = addresses.map(\.host).sorted().joined(separator: ", ")
                _ = startThread(name: "ice-restart") { self.restartICE(reason: "addresses changed: \(list)") }
            }
        } else {
            addressMonitor = nil
        }
        _ = startThread(name: "call-timer") { [weak self] in
            var ticks = 0
            while let self {
                self.perform(.tick)
                self.metrics.sample(self)
                ticks += 1
                if ticks % 20 == 0 { self.probeFailedParts() }
                usleep(250_000)
            }
        }
    }

    /// Resolves peers' `.local` candidates and answers for ours (nil on loopback-only setups).
    public let mdns: MDNSService?
    /// Restarts ICE when the device's addresses change (only when it binds every interface).
    var addressMonitor: AddressMonitor?

    var connectionConfiguration: PeerConnectionConfiguration {
        let config = self.config
        var addrs: [TransportAddress]? = nil
        if let list = config.networkAddresses { addrs = list.compactMap { TransportAddress(host: $0, port: 0) } }
        var c = PeerConnectionConfiguration(dtls: dtls, bindAddresses: addrs, includeLoopback: config.includeLoopback, logger: logger)
        c.maxVideoBitrateKbps = config.videoBitrateKbps
        c.mdns = mdns
        c.hideAddressesWithMDNS = config.mdns
        c.stunServers = config.stunServers.compactMap { splitHostPort($0).flatMap { TransportAddress(host: $0.0, port: $0.1) } }
        c.turnServers = config.turnServers.compactMap { t in
            TransportAddress(host: t.host, port: t.port).map {
                TURNServer(address: $0, transport: TURNServer.Transport(rawValue: t.transport) ?? .udp, username: t.username, password: t.credential)
            }
        }
        return c
    }

    var videoSettings: H264EncoderSettings {
        let config = self.config
        return H264EncoderSettings(width: config.videoWidth, height: config.videoHeight, fps: config.videoFPS, bitrateKbps: config.videoBitrateKbps)
    }

    func localParameters(_ pc: PeerConnection, withCandidates: Bool = true) -> LocalParameters {
        let config = self.config
        let ice = pc.localICE
        let ssrc = pc.localSSRCs
        var lp = LocalParameters(iceUfrag: ice.ufrag, icePwd: ice.pwd, fingerprint: identity.fingerprint,
                                 candidates: withCandidates ? ice.candidates : [], endOfCandidates: withCandidates,
                                 audioSSRC: ssrc.audio, videoSSRC: ssrc.video, cname: config.name, streamID: config.name)
        lp.sendVideo = config.videoSource != "none"
        lp.sendAudio = config.audioSource != "none"
        return lp
    }

    /// The call phase (`idle`, `calling`, `ringing`, `in-call`, `ending`).
    public var phase: CallPhase { lock.withLock { machine.phase } }

    // MARK: Events and actions

    /// Feeds an event to the state machine and carries out what it says. Actions that
    /// need an answer in the caller's context (incoming calls) are returned instead.
    @discardableResult
    func perform(_ event: CallEvent) -> [CallAction] {
        let (actions, before, after) = lock.withLock { () -> ([CallAction], CallPhase, CallPhase) in
            let before = machine.phase
            let a = machine.handle(event, now: Instant.now())
            return (a, before, machine.phase)
        }
        if before.name != after.name {
            onPhaseChange?(after.name)
            if event != .tick { logger.debug("call phase", metadata: ["STATE": "\(after.name)", "event": "\(event)"]) }
        }
        var rest: [CallAction] = []
        for a in actions {
            switch a {
            case .setLED(let p):
                leds.show(p)
            case .placeCall(let peer):
                // Off the caller's thread: a button press must not block on the network.
                _ = startThread(name: "call-out") { [self] in
                    do { try self.runOutgoing(to: peer) } catch {
                        self.logger.warning("call failed", metadata: ["PEER": "\(peer)", "REASON": "\(error)"])
                    }
                }
            case .answer:
                if let media = lock.withLock({ call?.media }) { media.allowSending() }
                if event != .tick { logger.info("call answered", metadata: ["STATE": "in-call"]) }
            case .hangup(let reason):
                if let id = lock.withLock({ call?.id }) {
                    _ = startThread(name: "call-end") { [self] in self.end(id: id, reason: reason, notifyPeer: true) }
                }
            case .abandonOutgoing:
                let c: ActiveCall? = lock.withLock { defer { call = nil }; call?.abandoned = true; return call }
                if let c {
                    logger.info("glare: the peer's call wins; dropping ours", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)"])
                    c.media.stop()
                    _ = startThread(name: "call-drop") { c.pc.close(reason: "glare") }
                }
            case .acceptIncoming, .refuseIncoming, .ignored:
                rest.append(a)
            }
        }
        return rest
    }

    /// The button, or `videophonectl press [--long]`.
    public func press(long: Bool) -> String {
        let rest = perform(long ? .longPress : .shortPress)
        for case .ignored(let why) in rest { return why }
        return phase.name
    }

    // MARK: Outgoing

    /// Calls a provisioned peer (the first when `peerName` is nil) from `videophonectl`.
    /// Returns once the peer answered the offer (its device may still be ringing).
    public func placeCall(to peerName: String? = nil) throws(CallError) {
        let actions = lock.withLock { machine.handle(.dial(peer: peerName), now: Instant.now()) }
        var peer: String? = nil
        for a in actions {
            switch a {
            case .placeCall(let p): peer = p
            case .setLED(let l): leds.show(l)
            case .ignored(let why):
                throw CallError(status: why.contains("no peer") ? 404 : 409, why.hasPrefix("dial") ? "busy: \(phase.name)" : why)
            default: break
            }
        }
        guard let peer else { throw CallError(status: 409, "busy: \(phase.name)") }
        onPhaseChange?(phase.name)
        try runOutgoing(to: peer)
    }

    /// Sets up the outgoing call to `peerName`: offer, answer, connection. The state
    /// machine is already in `calling`.
    func runOutgoing(to peerName: String) throws(CallError) {
        let config = self.config
        guard let peer = config.peers.first(where: { $0.name == peerName }) else {
            perform(.remoteEnded(reason: "peer vanished from the config"))
            perform(.ended)
            throw CallError(status: 404, "no peer named '\(peerName)'")
        }
        let id = randomHex(8)
        let media = MediaSession(logger: logger, camera: makeCamera(config), microphone: makeMicrophone(config), speaker: makeSpeaker(config),
                                 videoSettings: videoSettings, sendingAllowed: true, makeEncoder: makeEncoder)
        let pc: PeerConnection
        do { pc = try PeerConnection(configuration: connectionConfiguration, controlling: true, handlers: handlers(for: id, media: media)) }
        catch {
            perform(.remoteEnded(reason: "no transport"))
            perform(.ended)
            throw CallError(status: 500, "cannot open transport: \(error)")
        }
        let active = ActiveCall(id: id, peerName: peer.name, outgoing: true, pc: pc, media: media)
        let stillCalling = lock.withLock { () -> Bool in
            guard case .calling(let p) = machine.phase, p == peer.name, call == nil else { return false }
            call = active
            return true
        }
        guard stillCalling else {
            pc.close(reason: "cancelled before the offer went out")
            throw CallError(status: 409, "the call was cancelled")
        }
        var log = logger
        log[metadataKey: "CALL_ID"] = "\(id)"
        log[metadataKey: "PEER"] = "\(peer.name)"
        startMedia(media, active.pc, callID: id)
        let offer = JSEP.makeOffer(localParameters(active.pc, withCandidates: !config.trickle), sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
        log.info("calling", metadata: ["STATE": "calling", "url": "\(peer.url)"])
        active.offerSentAt = Instant.now()
        let response: HTTPResponse
        do {
            response = try HTTPClient.request(method: "POST", url: peer.url + "/call",
                                              headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer \(peer.token)"),
                                                        ("X-Videophone-Name", config.name)],
                                              body: Array(offer.text.utf8))
        } catch {
            failOutgoing(active, reason: "signalling failed: cannot reach \(peer.name): \(error)", outcome: "failed")
            throw CallError(status: 502, "cannot reach \(peer.name): \(error)")
        }
        if active.abandoned { throw CallError(status: 409, "glare: the peer's call was taken instead") }
        guard response.status == 201 else {
            let reason = "\(peer.name) refused the call: \(response.status) \(response.bodyText.prefix(200))"
            if response.status == 409 && response.bodyText.hasPrefix("glare") {
                // Both called at once and the peer's call wins: drop ours quietly and take theirs.
                log.info("glare: the peer's call wins", metadata: ["STATE": "\(phase.name)"])
                lock.withLock { if call === active { call = nil } }
                active.media.stop()
                active.pc.close(reason: "glare")
                perform(.glareLost)
                throw CallError(status: 409, "glare: \(peer.name) called at the same moment; taking its call")
            }
            failOutgoing(active, reason: reason, outcome: response.status == 409 ? "busy" : "refused")
            throw CallError(status: response.status == 409 ? 409 : 502, reason)
        }
        let session: NegotiatedSession
        do {
            let answer = try SessionDescription(parsing: response.bodyText)
            session = try JSEP.acceptAnswer(answer, local: localParameters(active.pc))
        } catch {
            failOutgoing(active, reason: "bad answer from \(peer.name): \(error)", outcome: "failed")
            throw CallError(status: 502, "bad answer from \(peer.name): \(error)")
        }
        if let pinned = peer.fingerprint, !Device.sameFingerprint(pinned, session.remoteFingerprint) {
            let reason = "\(peer.name) answered with certificate fingerprint \(session.remoteFingerprint.algorithm) \(Hex.encode(session.remoteFingerprint.digest, separator: ":", uppercase: true)), not the pinned \(pinned)"
            log.error("refused answer: fingerprint does not match the pinned one", metadata: ["REASON": "\(reason)"])
            failOutgoing(active, reason: reason, outcome: "refused")
            throw CallError(status: 502, reason)
        }
        if let loc = response.header("Location") {
            active.remoteResource = loc.hasPrefix("http") ? loc : peer.url + loc
            active.remoteToken = peer.token
        }
        active.videoCodec = Device.describe(session)
        active.pc.setRemote(session)
        log.info("offer answered; waiting for the callee", metadata: ["STATE": "calling"])
        if !config.trickle { active.sentCandidates = Set(active.pc.localICE.candidates) }
        if let resource = active.remoteResource, config.trickle || !config.stunServers.isEmpty || !config.turnServers.isEmpty {
            trickleCandidates(active, to: resource, token: peer.token, log: log)
        }
    }

    func failOutgoing(_ c: ActiveCall, reason: String, outcome: String) {
        guard !c.abandoned else { return }
        perform(.remoteEnded(reason: reason))
        end(id: c.id, reason: reason, notifyPeer: false, outcome: outcome)
    }

    // MARK: Incoming

    /// Handles `POST /call`: checks the token and the offer, answers, starts media.
    public func acceptOffer(_ req: HTTPRequest) -> HTTPResponse {
        guard let caller = authorise(req) else {
            metrics.callOutcome("unauthorised")
            if rateLimiter.shouldLog(source: req.peer) {
                logger.warning("refused call: missing or wrong bearer token", metadata: ["from": "\(req.peer)", "REASON": "unauthorised"])
            }
            return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n", headers: [("WWW-Authenticate", "Bearer")])
        }
        guard req.header("content-type")?.lowercased().hasPrefix("application/sdp") == true else {
            return HTTPResponse(status: 415, contentType: "text/plain", text: "expected Content-Type: application/sdp\n")
        }
        let offer: SessionDescription
        do { offer = try SessionDescription(parsing: req.bodyText) } catch {
            logger.notice("refused malformed offer", metadata: ["from": "\(req.peer)", "REASON": "\(error)"])
            return HTTPResponse(status: 400, contentType: "text/plain", text: "malformed SDP offer: \(error)\n")
        }
        let theirDigest = Device.offerFingerprint(offer)
        let config = self.config
        let peerName: String
        switch caller {
        case .peer(let p):
            peerName = p.name
            if let pinned = p.fingerprint {
                guard let fp = theirDigest, Device.sameFingerprint(pinned, fp) else {
                    let got = theirDigest.map { "\($0.algorithm) \(Hex.encode($0.digest, separator: ":", uppercase: true))" } ?? "none"
                    logger.error("refused call: certificate fingerprint does not match the pinned one",
                                 metadata: ["PEER": "\(p.name)", "from": "\(req.peer)", "REASON": "offer fingerprint \(got), pinned \(pinned)"])
                    metrics.callOutcome("refused")
                    return HTTPResponse(status: 403, contentType: "text/plain", text: "certificate fingerprint does not match the one provisioned for \(p.name)\n")
                }
            }
        case .guest:
            // A device calling with our shared token names itself; a name that is one of our
            // peers is used for display and glare, and that peer's pin still applies.
            if let claimed = req.header("x-videophone-name"), let p = config.peers.first(where: { $0.name == claimed }) {
                if let pinned = p.fingerprint, !(theirDigest.map { Device.sameFingerprint(pinned, $0) } ?? false) {
                    logger.error("refused call: certificate fingerprint does not match the pinned one",
                                 metadata: ["PEER": "\(p.name)", "from": "\(req.peer)", "REASON": "claimed name with another certificate"])
                    metrics.callOutcome("refused")
                    return HTTPResponse(status: 403, contentType: "text/plain", text: "certificate fingerprint does not match the one provisioned for \(p.name)\n")
                }
                peerName = p.name
            } else {
                peerName = "guest@\(req.peer)"
            }
        }
        let glareWins = theirDigest.map { winsGlare(ourFingerprint: identity.sha256, theirFingerprint: $0.digest) } ?? true
        let actions = perform(.incoming(peer: peerName, glareWins: glareWins))
        for a in actions {
            if case .refuseIncoming(let status, let reason) = a {
                logger.notice("refused call", metadata: ["PEER": "\(peerName)", "from": "\(req.peer)", "REASON": "\(reason)"])
                metrics.callOutcome("busy")
                return HTTPResponse(status: status, contentType: "text/plain", text: reason + "\n")
            }
        }
        let answered = lock.withLock { machine.phase == .inCall(peer: peerName) }
        let id = randomHex(8)
        let media = MediaSession(logger: logger, camera: makeCamera(config), microphone: makeMicrophone(config), speaker: makeSpeaker(config),
                                 videoSettings: videoSettings, sendingAllowed: answered, makeEncoder: makeEncoder)
        let result: Result<(ActiveCall, SessionDescription), CallError>
        do {
            let pc = try PeerConnection(configuration: connectionConfiguration, controlling: false, handlers: handlers(for: id, media: media))
            do {
                let peerTrickles = (offer.value("ice-options") ?? offer.media.first?.value("ice-options") ?? "").split(separator: " ").contains("trickle")
                let holdBack = config.trickle && peerTrickles
                let (answer, session) = try JSEP.answer(offer: offer, local: localParameters(pc, withCandidates: !holdBack),
                                                        sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
                let c = ActiveCall(id: id, peerName: peerName, outgoing: false, pc: pc, media: media)
                if !holdBack { c.sentCandidates = Set(pc.localICE.candidates) }
                c.videoCodec = Device.describe(session)
                // A press may have answered between the state machine's ringing and here, when
                // `.answer` found no call to start: look again with the call in place.
                let answeredMeanwhile = lock.withLock { () -> Bool in
                    call = c
                    return machine.phase == .inCall(peer: peerName)
                }
                if answeredMeanwhile && !answered { media.allowSending() }
                pc.setRemote(session)
                result = .success((c, answer))
            } catch {
                pc.close(reason: "offer refused")
                result = .failure(CallError(status: 400, "\(error)"))
            }
        } catch {
            result = .failure(CallError(status: 500, "cannot open transport: \(error)"))
        }
        switch result {
        case .failure(let e):
            perform(.remoteEnded(reason: e.description))
            perform(.ended)
            metrics.callOutcome("refused")
            logger.notice("refused call", metadata: ["PEER": "\(peerName)", "from": "\(req.peer)", "REASON": "\(e.description)"])
            return HTTPResponse(status: e.status, contentType: "text/plain", text: e.description + "\n")
        case .success(let (active, answer)):
            startMedia(media, active.pc, callID: id)
            logger.info(answered ? "incoming call answered" : "incoming call ringing",
                        metadata: ["CALL_ID": "\(id)", "PEER": "\(peerName)", "STATE": "\(answered ? "in-call" : "ringing")"])
            return HTTPResponse(status: 201, contentType: "application/sdp", text: answer.text,
                                headers: [("Location", "/call/\(id)"), ("ETag", "\"\(id)\"")])
        }
    }

    /// Answers a ringing call (button, `videophonectl answer`).
    public func answer() throws(CallError) {
        let rest = perform(.answerRequested)
        for case .ignored(let why) in rest { throw CallError(status: 409, why) }
    }

    /// Handles `DELETE /call/ID`.
    public func deleteCall(id: String, req: HTTPRequest) -> HTTPResponse {
        guard authorise(req) != nil else { return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n") }
        let exists = lock.withLock { call?.id == id }
        guard exists else { return HTTPResponse(status: 404, contentType: "text/plain", text: "no call \(id)\n") }
        perform(.remoteEnded(reason: "remote hung up (DELETE)"))
        end(id: id, reason: "remote hung up (DELETE)", notifyPeer: true)
        return HTTPResponse(status: 200)
    }

    /// Hangs up the current call, if any (`videophonectl hangup`, SIGTERM).
    public func hangup(reason: String = "local hangup") -> Bool {
        guard let id = lock.withLock({ call?.id }) else {
            let rest = perform(.hangupRequested)
            return rest.isEmpty
        }
        perform(.hangupRequested)
        end(id: id, reason: reason, notifyPeer: true)
        return true
    }

    /// Sends the candidates the callee has not had yet (host ones when trickling, then
    /// server-reflexive ones as gathering finds them) to its resource (RFC 8840 over
    /// WHIP's PATCH), and adds any it returns. The host pair can connect meanwhile.
    func trickleCandidates(_ c: ActiveCall, to resource: String, token: String, log: Logger, skipHost: Bool = false) {
        _ = startThread(name: "trickle") { [self] in
            /// Sends lines; returns true once the callee said it has no more candidates.
            func patch(_ lines: [String]) -> Bool {
                log.debug("trickle PATCH", metadata: ["lines": "\(lines.joined(separator: " | "))"])
                do {
                    let r = try HTTPClient.request(method: "PATCH", url: resource,
                                                   headers: [("Content-Type", "application/trickle-ice-sdpfrag"), ("Authorization", "Bearer \(token)")],
                                                   body: Array((lines.joined(separator: "\r\n") + "\r\n").utf8))
                    guard r.status == 200 || r.status == 204 else {
                        log.warning("trickle PATCH refused", metadata: ["status": "\(r.status)"])
                        return true
                    }
                    var done = false
                    for line in r.bodyText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
                        if line.hasPrefix("a=candidate:") { c.pc.addRemoteCandidate(String(line.dropFirst(2))) }
                        if line.hasPrefix("a=end-of-candidates") { done = true }
                    }
                    return done
                } catch {
                    log.warning("trickle PATCH failed", metadata: ["REASON": "\(error)"])
                    return true
                }
            }
            let host = skipHost ? [] : self.unsent(c, c.pc.localICE.candidates)
            if !host.isEmpty { _ = patch(host.map { "a=candidate:\($0)" }) }
            // Each candidate goes out as soon as it is found: a server-reflexive one must not
            // wait for a slow (or dead) TURN server.
            var done = false
            let deadline = Instant.now() + .seconds(10)
            while self.lock.withLock({ self.call === c }) {
                let g = c.pc.gathered
                let more = self.unsent(c, g.candidates)
                let last = g.complete || Instant.now() > deadline
                if !more.isEmpty || last {
                    done = patch(more.map { "a=candidate:\($0)" } + (last ? ["a=end-of-candidates"] : []))
                }
                if last { break }
                usleep(20_000)
            }
            // The callee may still be gathering (its relay allocation): ask again until it
            // says end-of-candidates, for a few seconds at most.
            var tries = 0
            while !done && tries < 40 && self.lock.withLock({ self.call === c }) {
                usleep(100_000)
                tries += 1
                done = patch([])
            }
        }
    }

    /// Restarts ICE on the call we placed (our addresses changed): new credentials and
    /// candidates go to the callee in a PATCH, its new ones come back; media resumes on the
    /// new pair while DTLS and SRTP carry on.
    public func restartICE(reason: String) {
        guard let c = lock.withLock({ call }), c.outgoing, let resource = c.remoteResource else {
            if lock.withLock({ call != nil }) { logger.notice("addresses changed; the peer placed this call and must restart ICE", metadata: ["REASON": "\(reason)"]) }
            return
        }
        var log = logger
        log[metadataKey: "CALL_ID"] = "\(c.id)"
        log[metadataKey: "PEER"] = "\(c.peerName)"
        log.info("ICE restart", metadata: ["REASON": "\(reason)"])
        let mine = c.pc.restartICE()
        lock.withLock { c.sentCandidates = Set(mine.candidates) }
        let body = (["a=ice-ufrag:\(mine.ufrag)", "a=ice-pwd:\(mine.pwd)"] + mine.candidates.map { "a=candidate:\($0)" }).joined(separator: "\r\n") + "\r\n"
        do {
            let r = try HTTPClient.request(method: "PATCH", url: resource,
                                           headers: [("Content-Type", "application/trickle-ice-sdpfrag"), ("Authorization", "Bearer \(c.remoteToken ?? "")")],
                                           body: Array(body.utf8))
            guard r.status == 200 else {
                log.warning("ICE restart refused by the peer", metadata: ["status": "\(r.status)"])
                return
            }
            let lines = r.bodyText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
            if let u = lines.first(where: { $0.hasPrefix("a=ice-ufrag:") }), let p = lines.first(where: { $0.hasPrefix("a=ice-pwd:") }) {
                c.pc.setRemoteCredentials(ufrag: String(u.dropFirst("a=ice-ufrag:".count)), pwd: String(p.dropFirst("a=ice-pwd:".count)))
            }
            for line in lines where line.hasPrefix("a=candidate:") { c.pc.addRemoteCandidate(String(line.dropFirst(2))) }
        } catch {
            log.warning("ICE restart PATCH failed", metadata: ["REASON": "\(error)"])
            return
        }
        trickleCandidates(c, to: resource, token: c.remoteToken ?? "", log: log, skipHost: true)
    }

    /// The candidates among `all` the peer has not had yet; marks them sent.
    func unsent(_ c: ActiveCall, _ all: [String]) -> [String] {
        lock.withLock {
            let new = all.filter { !c.sentCandidates.contains($0) }
            c.sentCandidates.formUnion(new)
            return new
        }
    }

    /// Opens encoders and starts capture off the signalling path: the offer or answer
    /// goes out without waiting for x264 to open.
    func startMedia(_ media: MediaSession, _ pc: PeerConnection, callID: String) {
        let logger = self.logger
        _ = startThread(name: "media-start") {
            do { try media.start(peerConnection: pc) } catch {
                logger.error("media start failed; the call goes on without it", metadata: ["CALL_ID": "\(callID)", "REASON": "\(error)"])
            }
        }
    }

    func handlers(for id: String, media: MediaSession) -> PeerConnectionHandlers {
        var h = media.handlers
        h.onClosed = { [weak self] reason in
            // Off the transport thread: ending joins threads.
            _ = startThread(name: "call-end") {
                guard let self else { return }
                guard self.lock.withLock({ self.call?.id == id }) else { return }
                self.perform(.remoteEnded(reason: reason))
                self.end(id: id, reason: reason, notifyPeer: false)
            }
        }
        media.onFirstRemoteMedia = { [weak self] in
            guard let self, self.lock.withLock({ self.call?.id == id }) else { return }
            self.perform(.mediaFlowing)
        }
        return h
    }

    /// Ends call `id`: stops media, tells the peer (RTCP BYE, DTLS close_notify and, for
    /// calls we placed, DELETE on the peer's resource).
    func end(id: String, reason: String, notifyPeer: Bool, outcome: String? = nil) {
        let c: ActiveCall? = lock.withLock {
            guard let c = call, c.id == id else { return nil }
            call = nil
            return c
        }
        guard let c else { return }
        c.media.stop()
        metrics.recordSetup(c.pc.stats.timeline, offerSentAt: c.offerSentAt)
        c.pc.close(reason: reason)
        if notifyPeer, let url = c.remoteResource {
            let token = c.remoteToken ?? ""
            _ = try? HTTPClient.request(method: "DELETE", url: url, headers: [("Authorization", "Bearer \(token)")], timeout: .seconds(1))
        }
        lock.withLock { lastCall = CallSummary(id: c.id, peer: c.peerName, endReason: reason) }
        metrics.callOutcome(outcome ?? Device.outcome(reason))
        perform(.ended)
        logger.info("call ended", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)", "STATE": "idle", "REASON": "\(reason)"])
    }

    static func outcome(_ reason: String) -> String {
        if reason.hasPrefix("missed") { return "missed" }
        if reason == "rejected" { return "rejected" }
        if reason == "cancelled" || reason.hasPrefix("no answer") { return "cancelled" }
        if reason.contains("failed") || reason.contains("expired") { return "failed" }
        return "completed"
    }

    /// Which provisioned peer (or guest) presented this request's bearer token. Every
    /// token is compared in constant time, and all of them always are.
    func authorise(_ req: HTTPRequest) -> Caller? {
        guard let auth = req.header("authorization"), auth.hasPrefix("Bearer ") else { return nil }
        let presented = Array(auth.dropFirst(7).utf8)
        let config = self.config
        var found: Caller? = nil
        for p in config.peers where !p.acceptToken.isEmpty {
            if constantTimeEqual(presented, Array(p.acceptToken.utf8)) && found == nil { found = .peer(p) }
        }
        if !config.signallingToken.isEmpty && constantTimeEqual(presented, Array(config.signallingToken.utf8)) && found == nil { found = .guest }
        return found
    }

    static func offerFingerprint(_ sd: SessionDescription) -> (algorithm: String, digest: [UInt8])? {
        guard let v = sd.attribute("fingerprint", media: 0) else { return nil }
        let parts = v.split(separator: " ")
        guard parts.count == 2, let d = Hex.decode(String(parts[1])) else { return nil }
        return (parts[0].lowercased(), d)
    }

    /// Compares a provisioned `sha-256 AB:CD:...` with a fingerprint from SDP.
    static func sameFingerprint(_ pinned: String, _ fp: (algorithm: String, digest: [UInt8])) -> Bool {
        let parts = pinned.split(separator: " ")
        guard parts.count == 2, parts[0].lowercased() == fp.algorithm, let d = Hex.decode(String(parts[1])) else { return false }
        return constantTimeEqual(d, fp.digest)
    }

    static func describe(_ s: NegotiatedSession) -> String? {
        guard let v = s.video else { return nil }
        return "\(v.codec.name) profile-level-id=\(v.codec.parameter("profile-level-id") ?? "-") pt=\(v.codec.payloadType)"
    }

    /// Takes a new configuration (SIGHUP). The call in progress keeps the settings it
    /// started with; peers, tokens, answering and media settings apply to the next call.
    /// Returns what could not change without a restart.
    public func reload(_ new: DeviceConfig) -> [String] {
        var needsRestart: [String] = []
        lock.withLock {
            let old = _config
            if old.signallingHost != new.signallingHost || old.signallingPort != new.signallingPort { needsRestart.append("signalling.listen") }
            if old.controlSocket != new.controlSocket { needsRestart.append("control.socket") }
            if old.stateDirectory != new.stateDirectory { needsRestart.append("device.state_directory") }
            if old.metricsListen != new.metricsListen { needsRestart.append("metrics.listen") }
            if old.gpio != new.gpio { needsRestart.append("gpio") }
            if old.videoEncoder != new.videoEncoder || old.videoEncoderDevice != new.videoEncoderDevice { needsRestart.append("video.encoder") }
            _config = new
            machine.peers = new.peers.map(\.name)
            machine.autoAnswer = new.autoAnswer
            machine.ringTimeout = .seconds(Int64(new.ringTimeoutSeconds))
        }
        leds.show(lock.withLock { machine.led })
        return needsRestart
    }

    // MARK: HTTP routes

    /// Routes a signalling request.
    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        let path = req.path.split(separator: "?").first.map(String.init) ?? req.path
        var r: HTTPResponse
        // Bounded work per source: a flood is refused before any parsing.
        if req.method != "GET" && !rateLimiter.allow(source: req.peer) {
            return HTTPResponse(status: 429, contentType: "text/plain", text: "too many requests\n", headers: [("Retry-After", "1")])
        }
        switch (req.method, path) {
        case ("OPTIONS", _):
            r = HTTPResponse(status: 204, headers: [("Access-Control-Allow-Methods", "POST, PATCH, DELETE, GET, OPTIONS"),
                                                    ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match"),
                                                    ("Access-Control-Max-Age", "600")])
        case ("POST", "/call"):
            r = acceptOffer(req)
        case ("DELETE", _) where path.hasPrefix("/call/"):
            r = deleteCall(id: String(path.dropFirst(6)), req: req)
        case ("PATCH", _) where path.hasPrefix("/call/"):
            r = patchCall(id: String(path.dropFirst(6)), req: req)
        case ("GET", "/"), ("GET", "/index.html"):
            r = HTTPResponse(status: 200, contentType: "text/html; charset=utf-8", text: DevicePage.html,
                             headers: [("Cache-Control", "no-store")])
        case ("GET", "/metrics") where config.metricsListen == nil:
            r = HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4", text: metrics.render())
        case ("GET", "/status"):
            r = HTTPResponse(status: 200, contentType: "application/json", text: statusJSON() + "\n")
        case (_, "/call"), (_, "/status"):
            r = HTTPResponse(status: 405, contentType: "text/plain", text: "method not allowed\n")
        default:
            r = HTTPResponse(status: 404, contentType: "text/plain", text: "not found\n")
        }
        r.headers.append(("Access-Control-Allow-Origin", "*"))
        r.headers.append(("Access-Control-Expose-Headers", "Location, ETag"))
        return r
    }

    /// `PATCH /call/ID` with `application/trickle-ice-sdpfrag` (RFC 8840): remote candidates.
    func patchCall(id: String, req: HTTPRequest) -> HTTPResponse {
        guard authorise(req) != nil else { return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n") }
        guard req.header("content-type")?.lowercased().hasPrefix("application/trickle-ice-sdpfrag") == true else {
            return HTTPResponse(status: 415, contentType: "text/plain", text: "expected application/trickle-ice-sdpfrag\n")
        }
        guard let c = lock.withLock({ call?.id == id ? call : nil }) else {
            return HTTPResponse(status: 404, contentType: "text/plain", text: "no call \(id)\n")
        }
        let pc = c.pc
        let lines = req.bodyText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        let ufrag = lines.first { $0.hasPrefix("a=ice-ufrag:") }.map { String($0.dropFirst("a=ice-ufrag:".count)) }
        let pwd = lines.first { $0.hasPrefix("a=ice-pwd:") }.map { String($0.dropFirst("a=ice-pwd:".count)) }
        var restartHeader: [String] = []
        if let ufrag, let pwd, ufrag != pc.remoteUfrag {
            // The peer restarts ICE (RFC 8838 §4.4, RFC 9725 §4.4): so do we, and answer
            // with our new credentials.
            logger.info("ICE restart asked for by the peer", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)"])
            let mine = pc.restartICE()
            pc.setRemoteCredentials(ufrag: ufrag, pwd: pwd)
            lock.withLock { c.sentCandidates = [] }
            restartHeader = ["a=ice-ufrag:\(mine.ufrag)", "a=ice-pwd:\(mine.pwd)"]
        }
        for line in lines where line.hasPrefix("a=candidate:") {
            pc.addRemoteCandidate(String(line.dropFirst(2)))
        }
        // Our own candidates the peer has not had (held back from the answer, or found by
        // gathering since) travel back in the response.
        let gathered = pc.gathered
        let ours = restartHeader + unsent(c, pc.localICE.candidates + gathered.candidates).map { "a=candidate:\($0)" }
        if !ours.isEmpty || gathered.complete {
            let lines = ours + (gathered.complete ? ["a=end-of-candidates"] : [])
            return HTTPResponse(status: 200, contentType: "application/trickle-ice-sdpfrag", text: lines.joined(separator: "\r\n") + "\r\n")
        }
        return HTTPResponse(status: 204)
    }

    // MARK: Status

    /// `GET /status`: call state and W3C-named statistics.
    public func statusJSON() -> String {
        let (c, last) = lock.withLock { (call, lastCall) }
        var j = JSONWriter()
        j.beginObject()
        j.field("device", config.name)
        let phase = self.phase
        j.field("state", phase.name)
        if let p = phase.peer { j.field("peer", p) }
        j.field("led", leds.pattern.rawValue)
        j.beginArray("faults")
        for f in currentFaults { j.value(f.rawValue) }
        j.endArray()
        j.field("fingerprint", "sha-256 " + identity.fingerprint)
        if let m = mdns?.counters {
            j.beginObject("mdns")
            j.field("queriesAnswered", m.queriesAnswered)
            j.field("namesResolved", m.namesResolved)
            j.endObject()
        }
        if let last {
            j.beginObject("lastCall")
            j.field("id", last.id); j.field("peer", last.peer); j.field("endReason", last.endReason)
            j.endObject()
        }
        if let c {
            let s = c.pc.stats
            let f = c.media.figures
            j.beginObject("call")
            j.field("id", c.id)
            j.field("peer", c.peerName)
            j.field("direction", c.outgoing ? "outgoing" : "incoming")
            j.field("videoCodec", c.videoCodec)
            j.field("iceState", s.iceState)
            j.field("dtlsState", s.dtlsState)
            j.beginObject("setup")
            let t = s.timeline
            j.field("signalling", t.milliseconds(t.remoteDescription))
            j.field("ice", t.milliseconds(t.iceConnected))
            j.field("dtls", t.milliseconds(t.dtlsConnected))
            j.field("firstMediaSent", t.milliseconds(t.firstMediaSent))
            j.field("firstVideoFrameReceived", t.milliseconds(t.firstVideoFrameReceived))
            j.field("firstAudioReceived", t.milliseconds(t.firstAudioReceived))
            j.endObject()
            j.beginArray("stats")
            for i in s.inbound {
                j.beginObject()
                j.field("type", "inbound-rtp"); j.field("kind", i.kind); j.field("ssrc", i.ssrc)
                j.field("packetsReceived", i.packetsReceived); j.field("packetsLost", i.packetsLost)
                j.field("jitter", i.jitter); j.field("bytesReceived", i.bytesReceived)
                if i.kind == "video" {
                    j.field("framesReceived", i.framesReceived); j.field("framesDropped", i.framesDropped)
                    j.field("keyFramesReceived", i.keyFramesReceived); j.field("framesPerSecond", i.framesPerSecond)
                    j.field("nackCount", i.nackCount); j.field("pliCount", i.pliCount)
                } else {
                    j.field("packetsDecoded", f.audioPacketsDecoded)
                    // W3C meanings; the delays are the present values in ms (W3C's are sums).
                    j.field("concealedSamples", f.audioConcealedSamples)
                    j.field("packetsDiscarded", f.audioLatePackets + f.audioDiscardedPackets)
                    j.field("fecPacketsRecovered", f.audioRecoveredByFEC)
                    j.field("jitterBufferTargetMs", f.jitterBufferTargetMs)
                    j.field("jitterBufferDelayMs", f.jitterBufferDelayMs)
                    j.field("audioLevel", (f.audioLevel * 1000).rounded() / 1000)
                    j.field("speakerUnderruns", f.speakerUnderruns)
                }
                j.field("bitrate", i.bitrate)
                j.endObject()
            }
            for o in s.outbound {
                j.beginObject()
                j.field("type", "outbound-rtp"); j.field("kind", o.kind); j.field("ssrc", o.ssrc)
                j.field("packetsSent", o.packetsSent); j.field("bytesSent", o.bytesSent)
                if o.kind == "video" {
                    j.field("framesEncoded", o.framesEncoded); j.field("keyFramesEncoded", o.keyFramesEncoded)
                    j.field("targetBitrate", Double(s.targetVideoBitrateKbps * 1000))
                    j.field("frameWidth", o.frameWidth); j.field("frameHeight", o.frameHeight)
                    j.field("framesPerSecond", o.framesPerSecond)
                    j.field("encoderImplementation", f.encoderImplementation)
                    j.field("retransmittedPacketsSent", o.retransmittedPacketsSent)
                    j.field("nackCount", o.nackCount); j.field("pliCount", o.pliCount); j.field("firCount", o.firCount)
                } else {
                    j.field("microphoneOverruns", f.microphoneOverruns)
                }
                j.field("bitrate", o.bitrate)
                j.endObject()
            }
            j.beginObject()
            j.field("type", "candidate-pair")
            j.field("state", s.iceState == "connected" ? "succeeded" : s.iceState)
            j.field("nominated", s.candidatePair.nominated)
            j.field("localCandidateType", s.candidatePair.localCandidateType)
            j.field("remoteCandidateType", s.candidatePair.remoteCandidateType)
            j.field("localAddress", s.candidatePair.localAddress)
            j.field("remoteAddress", s.candidatePair.remoteAddress)
            j.field("currentRoundTripTime", s.candidatePair.currentRoundTripTime)
            j.field("availableOutgoingBitrate", s.candidatePair.availableOutgoingBitrate)
            j.endObject()
            j.endArray()
            j.beginObject("media")
            j.field("framesReceived", f.framesReceived)
            j.field("audioPacketsDecoded", f.audioPacketsDecoded)
            j.field("audioSamplesPlayed", f.audioSamplesPlayed)
            j.field("captureToFrameP50Ms", percentile(f.captureToFrameMs, 50))
            j.field("captureToWireP50Ms", percentile(c.pc.captureToWireSamples, 50))
            j.field("encodeP50Ms", percentile(f.encodeMs, 50))
            j.endObject()
            j.field("mdnsResolved", s.mdnsResolved)
            j.field("stunIgnored", s.ignoredSTUN)
            j.field("malformedDatagrams", s.malformedDatagrams)
            j.field("srtpFailures", s.srtpFailures)
            j.endObject()
        }
        j.endObject()
        return j.text
    }

    /// False when the media pipeline or the transport loop of the call in progress has
    /// stalled for `limit`: the watchdog then stops being fed and systemd restarts us.
    public func health(now: Instant = Instant.now(), limit: Duration = .seconds(5)) -> (ok: Bool, reason: String?) {
        guard let (pc, media, _) = currentCall else { return (true, nil) }
        if now - pc.heartbeat.current > limit { return (false, "transport loop stalled") }
        if let last = media.lastCapture, now - last > limit { return (false, "media capture stalled") }
        return (true, nil)
    }

    /// For in-process benchmarks and tests: the current call's parts.
    public var currentCall: (pc: PeerConnection, media: MediaSession, offerSentAt: Instant?)? {
        lock.withLock { call.map { ($0.pc, $0.media, $0.offerSentAt) } }
    }
}

/// Compares secrets without an early exit, so timing reveals nothing about them.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    let n = max(a.count, b.count)
    for i in 0..<n {
        let x = i < a.count ? a[i] : 0
        let y = i < b.count ? b[i] : 0
        diff |= x ^ y
    }
    return diff == 0
}

func randomHex(_ bytes: Int) -> String { Hex.encode(secureRandomBytes(bytes)) }

/// A part of the board that can fail while the daemon keeps running. Ordered by what the
/// LED shows first when several fail.
public enum DeviceFault: String, Comparable, Sendable {
    case network, camera, button, microphone, speaker

    var pattern: LEDPattern {
        switch self {
        case .network: .errorNoNetwork
        case .camera: .errorCameraMissing
        case .button, .microphone, .speaker: .errorDevice
        }
    }

    private var rank: Int { [.network, .camera, .button, .microphone, .speaker].firstIndex(of: self)! }
    public static func < (a: DeviceFault, b: DeviceFault) -> Bool { a.rank < b.rank }
}
