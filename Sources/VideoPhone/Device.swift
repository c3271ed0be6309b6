import CLinux
import CallControl
import Codecs
import DTLS
import Display
import Logging
import MediaDevices
import NetworkCore
import PeerConnection
import SDP
#if canImport(Glibc)
import Glibc
#endif

/// Who presented a valid bearer token.
enum Caller: Equatable, Sendable {
    /// A provisioned peer (its `accept_token`), possibly with a pinned fingerprint.
    case peer(name: String)
    /// Anyone holding the device's guest token (`signalling.token`), e.g. a browser.
    case guest
}

/// Why a call could not be placed or taken, typed; ``SignallingServer`` and the control
/// socket turn it into a status code and words.
public enum CallFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The state machine said no (busy, unknown peer, glare).
    case refused(Refusal)
    /// The offer could not be answered (its SDP, codecs or fingerprint).
    case badOffer(String)
    /// The call started and then ended before it was up.
    case ended(EndReason)
    /// The device could not open a transport.
    case noTransport(String)
    /// Call control is overloaded; try again.
    case overloaded

    public var description: String {
        switch self {
        case .refused(let r): r.description
        case .badOffer(let why): why
        case .ended(let r): r.description
        case .noTransport(let why): "cannot open transport: \(why)"
        case .overloaded: "call control is busy; try again"
        }
    }
}

/// The call in progress. Created and changed on the call-control queue only; the fields
/// other threads read once it is published (`videoCodec`, `offerSentAt`) are locked.
final class ActiveCall: @unchecked Sendable {
    let id: String
    let peerName: String
    let outgoing: Bool
    /// Who created the call resource: only they may change or end it.
    let creator: Caller?
    let pc: PeerConnection
    let media: MediaSession
    /// For outgoing calls: the peer's resource (for trickle, ICE restart and DELETE).
    var remoteResource: String?
    var remoteToken: String?
    /// Candidates the peer has had from us (in the offer/answer or a PATCH).
    var sentCandidates: Set<String> = []
    /// The negotiated video codec, e.g. `H264 profile-level-id=42e01f`.
    var videoCodec: String? {
        get { readElsewhere.current.videoCodec }
        set { readElsewhere.withLock { $0.videoCodec = newValue } }
    }
    /// When our offer went out (calls we placed): the start of the set-up figures.
    var offerSentAt: Instant? {
        get { readElsewhere.current.offerSentAt }
        set { readElsewhere.withLock { $0.offerSentAt = newValue } }
    }
    /// The fields status (http thread) and the watchdog read while call control may still
    /// be setting them on an already published call: under a lock of their own.
    private let readElsewhere = Locked<(videoCodec: String?, offerSentAt: Instant?)>((nil, nil))
    /// Dropped because the peer's call won glare: its answers no longer matter.
    var abandoned = false
    var trickle = TrickleState()

    init(id: String, peerName: String, outgoing: Bool, creator: Caller?, pc: PeerConnection, media: MediaSession) {
        self.id = id; self.peerName = peerName; self.outgoing = outgoing; self.creator = creator; self.pc = pc; self.media = media
    }

    /// Where trickling our candidates to the callee stands (calls we placed).
    struct TrickleState {
        var active = false
        var inFlight = false
        var endSent = false
        /// The callee said end-of-candidates.
        var peerDone = false
        /// Empty PATCHes asking the callee for candidates it found late (bounded).
        var polls = 0
        var gatherDeadline: Instant?
        var skipHost = false
    }
}

/// The device's call control: one ``CallStateMachine`` and the call in progress, changed
/// only on the `call-control` queue. Button presses, control commands, signalling and media
/// events go in there; slow work leaves it (media start and stop on `media-control`,
/// outgoing HTTP on ``SignallingClient``), so the queue never waits on a device or the
/// network.
///
/// Readers (status, metrics, health) take a snapshot under ``lock``.
public final class Device: @unchecked Sendable {
    private var _config: DeviceConfig
    let logger: Logger
    public let identity: DTLSCertificate
    let dtls: DTLSContext
    let lock = Lock()
    private var machine: CallStateMachine
    private var call: ActiveCall? { didSet { if call != nil, call !== oldValue { callsStarted += 1 } } }
    /// Calls begun since start (under `lock`): a call that starts and ends between two
    /// call-control ticks still gets its pages given back.
    private var callsStarted = 0
    private var lastCall: CallSummary?
    /// Lights the call LED; the simulated board keeps the pattern for status.
    public let leds: any CallLED
    /// The screen (`[display]`); nil without one.
    public let screen: ScreenService?
    let metrics: DeviceMetrics
    let rateLimiter = RateLimiter()
    let parts: BoardParts
    /// Call control's executor.
    let control = SerialQueue(name: "call-control", capacity: 256)
    /// Opens and closes a call's devices and encoders, in order (a stop never overtakes a start).
    let mediaControl = SerialQueue(name: "media-control", capacity: 64)
    /// Outgoing signalling: WHIP over HTTP or signed messages through the broker (the
    /// adapter follows the peer's `via` and the resource its answer named).
    let signalling = SignallingRouter()
    /// Resolves peers' `.local` candidates and answers for ours (nil on loopback-only setups).
    public let mdns: MDNSService?
    /// Restarts ICE when the device's addresses change (only when it binds every interface).
    private var addressMonitor: AddressMonitor?
    private var tickTimer: UInt64?
    private var ticks = 0
    private let stopped = Locked(false)

    /// Called with the phase name whenever it changes (sd_notify STATUS).
    public var onPhaseChange: (@Sendable (String) -> Void)? {
        get { phaseHook.current }
        set { phaseHook.withLock { $0 = newValue } }
    }
    private let phaseHook = Locked<(@Sendable (String) -> Void)?>(nil)

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
        self.screen = ScreenService.make(config, logger: logger)
        self.metrics = DeviceMetrics()
        self.dtls = try DTLSContext(certificate: identity)
        self.machine = CallStateMachine(peers: config.peers.map(\.name), autoAnswer: config.autoAnswer,
                                        ringTimeout: .seconds(Int64(config.ringTimeoutSeconds)), now: Instant.now())
        let ifaces = (config.networkAddresses?.compactMap { TransportAddress(host: $0, port: 0) } ?? localInterfaceAddresses(includeLoopback: false))
            .filter { $0.family == .ipv4 && !$0.isLoopback }
        if ifaces.isEmpty {
            mdns = nil
        } else {
            do { mdns = try MDNSService(interfaces: ifaces, logger: logger) } catch {
                logger.warning("mDNS unavailable: .local candidates will rely on peer-reflexive discovery", metadata: ["REASON": "\(error)"])
                mdns = nil
            }
        }
        // The LED follows the faults; the closure needs self, so the parts come last.
        let faultHook = Locked<(@Sendable (Set<DeviceFault>) -> Void)?>(nil)
        parts = BoardParts(logger: logger) { faults in faultHook.current?(faults) }
        faultHook.withLock { $0 = { [weak self] faults in self?.faultsChanged(faults) } }
        let usable = config.networkAddresses?.compactMap { TransportAddress(host: $0, port: 0) }
            ?? localInterfaceAddresses(includeLoopback: config.includeLoopback)
        if usable.isEmpty {
            logger.error("no network address to call from", metadata: ["REASON": "no usable interface address"])
            parts.report(.network, failing: true)
        }
        leds.show(lock.withLock { machine.led })
        if config.networkAddresses == nil {
            addressMonitor = AddressMonitor(includeLoopback: config.includeLoopback) { [weak self] addresses in
                guard let self else { return }
                let list = addresses.map(\.host).sorted().joined(separator: ", ")
                signalling.broker?.addressesChanged()
                control.async { self.restartICE(reason: "addresses changed: \(list)") }
            }
        }
        // Armed from call control, so `tickTimer` and `tickWork` are only ever touched there
        // (armed here, the first write was on the creating thread, unordered with the tick's).
        _ = control.async { [weak self] in self?.scheduleTick() }
    }

    /// Stops call control: hangs up, then ends the queues' threads.
    public func stop() {
        guard stopped.withLock({ s -> Bool in defer { s = true }; return !s }) else { return }
        control.sync { [self] in
            control.cancel(tickTimer)
            if let id = call?.id {
                perform(.hangupRequested)
                end(id: id, reason: .daemonStopping, notifyPeer: true)
            }
        }
        control.stop()
        mediaControl.stop()
        screen?.stop()
        signalling.stop()
        addressMonitor?.stop()
    }

    public var config: DeviceConfig { lock.withLock { _config } }

    /// The call phase (`idle`, `calling`, `ringing`, `in-call`, `ending`).
    public var phase: CallPhase { lock.withLock { machine.phase } }

    public var currentFaults: [DeviceFault] { parts.current.sorted() }

    /// Records that a part failed or works again; the LED shows the most important fault.
    public func report(_ fault: DeviceFault, failing: Bool) { parts.report(fault, failing: failing) }

    private func faultsChanged(_ faults: Set<DeviceFault>) {
        screen?.setFaults(faults.sorted().compactMap { f -> ScreenFault? in
            switch f {
            case .camera: .noCamera
            case .network: .noNetwork
            case .broker: ScreenFault("no broker")
            case .microphone: ScreenFault("no microphone")
            case .speaker: ScreenFault("no speaker")
            case .button: nil
            }
        })
        let actions = lock.withLock { machine.setFault(faults.min()?.pattern) }
        for case .setLED(let p) in actions { leds.show(p) }
    }

    /// Opens the configured devices once (at start), so a missing part shows at once.
    public func checkParts() { parts.check(config) }

    /// Looks for the board's hardware encoder (at start).
    @discardableResult
    public func detectEncoder() -> String? {
        let found = parts.detectEncoder(config)
        metrics.setEncoder(found != nil ? "v4l2" : config.videoEncoder == "v4l2" ? "none" : "x264")
        return found
    }

    /// The call whose set-up pages were given back, and when call control first saw it.
    private var pagesCall: (id: String, seen: Instant, trims: Int)?
    private var pagesCallsStarted = 0

    /// When, after a call starts, set-up pages are given back besides at its start: while
    /// it is being set up (the handshake's code and the encoder's buffers together are the
    /// call's peak), then once it has settled.
    static let trimAfter: [Duration] = [.milliseconds(250), .milliseconds(750), .seconds(2), .seconds(5)]

    /// Setting a call up (signalling, ICE, the DTLS handshake, opening the encoder) faults in
    /// code the call does not run again; so does ending it. When a call starts, at
    /// ``trimAfter`` and once it has ended, read-only file pages that are still the file's
    /// are given back (see `clinux_trim_file_mappings`); what the call runs comes back as
    /// minor faults. When it has ended, the heap's free pages go back as well
    /// (``trimAfterEnd``).
    private func givePagesBack() {
        let (id, started) = lock.withLock { (call?.id, callsStarted) }
        let now = Instant.now()
        defer { pagesCallsStarted = started }
        if let id {
            pagesEnded = nil
            if pagesCall?.id != id {
                pagesCall = (id, now, 0)
                _ = clinux_trim_file_mappings()
            } else if let p = pagesCall, p.trims < Device.trimAfter.count, now - p.seen >= Device.trimAfter[p.trims] {
                _ = clinux_trim_file_mappings()
                pagesCall?.trims += 1
            }
        } else if pagesCall != nil || started != pagesCallsStarted {
            // A call ended (or came and went between two ticks): its code pages and its
            // heap go back now, and again once its threads have finished tearing down.
            pagesCall = nil
            pagesEnded = (now, 0)
            giveBackAfterCall()
        } else if let e = pagesEnded, e.trims < Device.trimAfterEnd.count, now - e.at >= Device.trimAfterEnd[e.trims] {
            pagesEnded?.trims += 1
            giveBackAfterCall()
        }
    }

    /// After a call: read-only file pages that are still the file's, and the heap's free
    /// pages (packets, reassembly slots, the encoder's buffers), so a device idles at the
    /// same footprint after every call.
    private func giveBackAfterCall() {
        _ = clinux_trim_file_mappings()
        _ = clinux_malloc_trim()
    }

    /// When, after a call ended, its pages are given back again: its media threads and
    /// encoder are torn down after call control has moved on.
    static let trimAfterEnd: [Duration] = [.milliseconds(500), .seconds(2)]
    private var pagesEnded: (at: Instant, trims: Int)?

    /// Ring and answer timeouts, metrics and idle probes: every 250 ms on call control.
    private func scheduleTick() {
        tickTimer = control.after(.milliseconds(250), tickWork)
    }

    /// The tick's closure, made once (a new one every 250 ms was an allocation each time).
    /// Made on the first ``scheduleTick()``, on call control, before the timer can fire.
    private lazy var tickWork: SerialQueue.Work = { [weak self] in
        guard let self else { return }
        perform(.tick)
        metrics.sample(self)
        givePagesBack()
        ticks += 1
        if ticks % 20 == 0, case .idle = phase { parts.probeFailed(config) }
        if !stopped.current { scheduleTick() }
    }

    // MARK: Events and actions (call-control queue)

    /// Feeds an event to the state machine and carries out what it says. Runs on call
    /// control. Actions that need an answer in the caller's context are returned.
    @discardableResult
    func perform(_ event: CallEvent) -> [CallAction] {
        let (actions, before, after) = lock.withLock { () -> ([CallAction], CallPhase, CallPhase) in
            let before = machine.phase
            let a = machine.handle(event, now: Instant.now())
            return (a, before, machine.phase)
        }
        if let screen {
            switch after {
            case .idle, .ending: screen.setPhase(.idle)
            case .calling(let p): screen.setPhase(.calling(p))
            case .ringing(let p): screen.setPhase(.ringing(p))
            case .inCall(let p): screen.setPhase(.inCall(p))
            }
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
                startOutgoing(to: peer, completion: nil)
            case .answer:
                if let media = lock.withLock({ call?.media }) { media.allowSending() }
                if event != .tick { logger.info("call answered", metadata: ["STATE": "in-call"]) }
            case .hangup(let reason):
                if let id = lock.withLock({ call?.id }) { end(id: id, reason: reason, notifyPeer: true) }
            case .abandonOutgoing:
                let c: ActiveCall? = lock.withLock { defer { call = nil }; call?.abandoned = true; return call }
                if let c {
                    logger.info("glare: the peer's call wins; dropping ours", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)"])
                    close(c, reason: "glare")
                }
            case .acceptIncoming, .refuseIncoming, .ignored:
                rest.append(a)
            }
        }
        return rest
    }

    /// Runs `work` on call control; false when it is overloaded (the caller refuses).
    @discardableResult
    func onControl(_ work: @escaping @Sendable () -> Void) -> Bool {
        let queued = control.async(work)
        // After stop() the queue refuses everything: that is shutting down, not overload.
        if !queued && !stopped.withLock({ $0 }) && rateLimiter.shouldLog(source: "call-control") {
            logger.warning("call control overloaded; an event was refused", metadata: ["REASON": "queue of \(control.capacity) full"])
        }
        return queued
    }

    /// The button, or `videophonectl press [--long]`: the phase after it, or why nothing happened.
    public func press(long: Bool, completion: @escaping @Sendable (String) -> Void = { _ in }) {
        screen?.activity()
        let queued = onControl { [self] in
            let rest = perform(long ? .longPress : .shortPress)
            for case .ignored(let why) in rest { completion(why.description); return }
            completion(phase.name)
        }
        if !queued { completion(CallFailure.overloaded.description) }
    }

    /// Answers a ringing call (button, `videophonectl answer`).
    public func answer(completion: @escaping @Sendable (CallFailure?) -> Void = { _ in }) {
        let queued = onControl { [self] in
            let rest = perform(.answerRequested)
            for case .ignored(let why) in rest { completion(.refused(why)); return }
            completion(nil)
        }
        if !queued { completion(.overloaded) }
    }

    /// Hangs up the current call, if any (`videophonectl hangup`, SIGTERM). Completes with
    /// whether there was one.
    public func hangup(reason: EndReason = .localHangup, completion: @escaping @Sendable (Bool) -> Void = { _ in }) {
        let queued = onControl { [self] in
            guard let id = lock.withLock({ call?.id }) else {
                completion(perform(.hangupRequested).isEmpty)
                return
            }
            perform(.hangupRequested)
            end(id: id, reason: reason, notifyPeer: true)
            completion(true)
        }
        if !queued { completion(false) }
    }

    /// Synchronous ``hangup(reason:completion:)`` for tests and benchmarks (not from call control).
    @discardableResult
    public func hangup(reason: EndReason = .localHangup) -> Bool {
        let done = Semaphore()
        let result = Locked(false)
        hangup(reason: reason) { r in result.withLock { $0 = r }; done.signal() }
        done.wait()
        return result.current
    }

    // MARK: Outgoing

    /// Calls a provisioned peer (the first when `peerName` is nil). Completes once the peer
    /// answered the offer (its device may still be ringing), or with why not.
    public func placeCall(to peerName: String? = nil, completion: @escaping @Sendable (CallFailure?) -> Void) {
        let queued = onControl { [self] in
            let actions = lock.withLock { machine.handle(.dial(peer: peerName), now: Instant.now()) }
            var peer: String? = nil
            for a in actions {
                switch a {
                case .placeCall(let p): peer = p
                case .setLED(let l): leds.show(l)
                case .ignored(let why): completion(.refused(why)); return
                default: break
                }
            }
            guard let peer else { completion(.refused(.busy(phase: phase.name))); return }
            onPhaseChange?(phase.name)
            startOutgoing(to: peer, completion: completion)
        }
        if !queued { completion(.overloaded) }
    }

    /// Synchronous ``placeCall(to:completion:)`` for tests and benchmarks (not from call control).
    public func placeCall(to peerName: String? = nil) throws(CallFailure) {
        let done = Semaphore()
        let result = Locked<CallFailure?>(nil)
        placeCall(to: peerName) { r in result.withLock { $0 = r }; done.signal() }
        done.wait()
        if let failure = result.current { throw failure }
    }

    /// Sets up the outgoing call to `peerName` and sends the offer; the state machine is in
    /// `calling` already.
    private func startOutgoing(to peerName: String, completion: (@Sendable (CallFailure?) -> Void)?) {
        let config = self.config
        guard let peer = config.peers.first(where: { $0.name == peerName }) else {
            perform(.remoteEnded(reason: .peerRemovedFromConfig))
            perform(.ended)
            completion?(.refused(.unknownPeer(peerName)))
            return
        }
        if signalling.knownOffline(peer) {
            // Its presence says it is not connected: say so at once instead of ringing nobody.
            logger.notice("not calling: the peer is offline", metadata: ["PEER": "\(peer.name)", "REASON": "its presence says offline"])
            showPeerOffline()
            perform(.remoteEnded(reason: .signallingFailed("\(peer.name) is offline")))
            perform(.ended)
            completion?(.ended(.signallingFailed("\(peer.name) is offline (broker presence)")))
            return
        }
        let id = randomHex(16)
        let media = makeMediaSession(config, sendingAllowed: true)
        let pc: PeerConnection
        do { pc = try PeerConnection(configuration: connectionConfiguration, controlling: true, handlers: handlers(for: id, media: media)) }
        catch {
            perform(.remoteEnded(reason: .noTransport("\(error)")))
            perform(.ended)
            completion?(.noTransport("\(error)"))
            return
        }
        let active = ActiveCall(id: id, peerName: peer.name, outgoing: true, creator: nil, pc: pc, media: media)
        let stillCalling = lock.withLock { () -> Bool in
            guard case .calling(let p) = machine.phase, p == peer.name, call == nil else { return false }
            call = active
            return true
        }
        guard stillCalling else {
            close(active, reason: "cancelled before the offer went out")
            completion?(.ended(.cancelled))
            return
        }
        let log = callLogger(active)
        startMedia(active)
        let offer = JSEP.makeOffer(localParameters(pc, withCandidates: !config.trickle), sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
        log.info("calling", metadata: ["STATE": "calling", "via": "\(peer.via == .broker ? "broker" : peer.url)"])
        active.offerSentAt = Instant.now()
        signalling.sendOffer(offer.text, to: peer, ourName: config.name, callID: id) { [weak self] result in
            guard let self else { return }
            let queued = self.onControl { self.offerAnswered(active, peer: peer, result: result, completion: completion) }
            if !queued { completion?(.overloaded) }
        }
    }

    /// The callee's answer to our offer (call control).
    private func offerAnswered(_ active: ActiveCall, peer: PeerConfig, result: Result<SignalReply, HTTPError>,
                               completion: (@Sendable (CallFailure?) -> Void)?) {
        let log = callLogger(active)
        guard !active.abandoned, lock.withLock({ call === active }) else {
            completion?(.ended(active.abandoned ? .refused(status: 409, detail: "glare: the peer's call was taken instead") : .cancelled))
            return
        }
        let response: SignalReply
        switch result {
        case .failure(let e):
            failOutgoing(active, reason: .signallingFailed("cannot reach \(peer.name): \(e)"), completion: completion)
            return
        case .success(let r):
            response = r
        }
        guard response.status == 201 else {
            // A 409 with the glare mark: both called at once and the peer's call wins, so
            // ours is dropped quietly and its offer taken.
            if response.status == 409 && response.glare {
                log.info("glare: the peer's call wins", metadata: ["STATE": "\(phase.name)"])
                lock.withLock { if call === active { call = nil } }
                close(active, reason: "glare")
                perform(.glareLost)
                completion?(.ended(.refused(status: 409, detail: "glare: \(peer.name) called at the same moment; taking its call")))
                return
            }
            let reason: EndReason = response.status == 409 ? .busy : .refused(status: response.status, detail: String(response.body.prefix(200)))
            failOutgoing(active, reason: reason, completion: completion)
            return
        }
        let session: NegotiatedSession
        do {
            let answer = try SessionDescription(parsing: response.body)
            session = try JSEP.acceptAnswer(answer, local: localParameters(active.pc))
        } catch {
            failOutgoing(active, reason: .signallingFailed("bad answer from \(peer.name): \(error)"), completion: completion)
            return
        }
        if let pinned = peer.fingerprint, !SignallingServer.sameFingerprint(pinned, session.remoteFingerprint) {
            let why = "\(peer.name) answered with certificate fingerprint \(session.remoteFingerprint.algorithm) \(Hex.encode(session.remoteFingerprint.digest, separator: ":", uppercase: true)), not the pinned \(pinned)"
            log.error("refused answer: fingerprint does not match the pinned one", metadata: ["REASON": "\(why)"])
            failOutgoing(active, reason: .fingerprintMismatch(why), completion: completion)
            return
        }
        if let resource = response.resource {
            active.remoteResource = resource
            active.remoteToken = peer.token
        }
        active.videoCodec = Device.describe(session)
        active.pc.setRemote(session)
        log.info("offer answered; waiting for the callee", metadata: ["STATE": "calling"])
        completion?(nil)
        let config = self.config
        if !config.trickle { active.sentCandidates = Set(active.pc.localICE.candidates) }
        if active.remoteResource != nil, config.trickle || !config.stunServers.isEmpty || !config.turnServers.isEmpty {
            active.trickle = .init(active: true, gatherDeadline: Instant.now() + .seconds(10))
            trickle(active)
            // Gathering that never finishes (a dead TURN server) still ends the trickle.
            control.after(.seconds(10)) { [weak self] in self?.trickle(active) }
        }
    }

    private func failOutgoing(_ c: ActiveCall, reason: EndReason, completion: (@Sendable (CallFailure?) -> Void)?) {
        completion?(.ended(reason))
        guard !c.abandoned else { return }
        perform(.remoteEnded(reason: reason))
        end(id: c.id, reason: reason, notifyPeer: false)
    }

    // MARK: Trickle and ICE restart (calls we placed)

    /// Sends the callee the candidates it has not had (host ones when trickling, then
    /// server-reflexive and relayed ones as gathering finds them), one PATCH at a time, and
    /// adds any it returns. Driven by gathering events, PATCH answers and timers: no polling
    /// loop. The host pair can connect meanwhile.
    func trickle(_ c: ActiveCall) {
        guard c.trickle.active, !c.trickle.inFlight, lock.withLock({ call === c }), let resource = c.remoteResource else { return }
        let g = c.pc.gathered
        let host = c.trickle.skipHost ? [] : c.pc.localICE.candidates
        let more = unsent(c, host + g.candidates)
        let last = g.complete || Instant.now() >= (c.trickle.gatherDeadline ?? Instant.now())
        var lines = more.map { "a=candidate:\($0)" }
        if last && !c.trickle.endSent { lines.append("a=end-of-candidates") }
        if lines.isEmpty {
            // All ours are out. The callee may still be gathering (its relay allocation):
            // ask again a few times until it says end-of-candidates.
            guard c.trickle.endSent, !c.trickle.peerDone, c.trickle.polls < 40 else {
                if c.trickle.endSent && (c.trickle.peerDone || c.trickle.polls >= 40) { c.trickle.active = false }
                return
            }
            c.trickle.polls += 1
            c.trickle.inFlight = true
            control.after(.milliseconds(100)) { [weak self] in self?.sendTrickle(c, [], to: resource) }
            return
        }
        if last { c.trickle.endSent = true }
        c.trickle.inFlight = true
        sendTrickle(c, lines, to: resource)
    }

    private func sendTrickle(_ c: ActiveCall, _ lines: [String], to resource: String) {
        callLogger(c).debug("trickle PATCH", metadata: ["lines": "\(lines.joined(separator: " | "))"])
        patch(c, lines, to: resource, what: "trickle PATCH", accepted: [200, 204], failed: { c.trickle.active = false }) { [weak self] lines in
            let candidates = lines.filter { $0.hasPrefix("a=candidate:") }.map { String($0.dropFirst(2)) }
            if !candidates.isEmpty { c.pc.addRemoteCandidates(candidates) }
            if lines.contains(where: { $0.hasPrefix("a=end-of-candidates") }) { c.trickle.peerDone = true }
            self?.trickle(c)
        }
    }

    /// Sends fragment `lines` to the callee's resource; back on call control, `answered`
    /// gets the lines of an accepted answer, or the failure is logged and `failed` runs.
    private func patch(_ c: ActiveCall, _ lines: [String], to resource: String, what: String, accepted: Set<Int>,
                       failed: @escaping @Sendable () -> Void, answered: @escaping @Sendable ([Substring]) -> Void) {
        let log = callLogger(c)
        signalling.patch(lines, to: resource, token: c.remoteToken ?? "") { [weak self] result in
            self?.onControl {
                c.trickle.inFlight = false
                switch result {
                case .failure(let e):
                    log.warning("\(what) failed", metadata: ["REASON": "\(e)"])
                    failed()
                case .success(let r) where !accepted.contains(r.status):
                    log.warning("\(what) refused by the peer", metadata: ["status": "\(r.status)"])
                    failed()
                case .success(let r):
                    answered(fragmentLines(r.body))
                }
            }
        }
    }

    /// Restarts ICE on the call we placed (our addresses changed): new credentials and
    /// candidates go to the callee in a PATCH, its new ones come back; media resumes on the
    /// new pair while DTLS and SRTP carry on. Call control.
    func restartICE(reason: String) {
        guard let c = lock.withLock({ call }) else { return }
        // Calls we placed restart at the callee's resource; calls that came through the
        // broker restart at the caller's (its offer named one). An HTTP caller has none.
        guard let resource = c.remoteResource else {
            logger.notice("addresses changed; the peer placed this call and must restart ICE", metadata: ["CALL_ID": "\(c.id)", "REASON": "\(reason)"])
            return
        }
        callLogger(c).info("ICE restart", metadata: ["REASON": "\(reason)"])
        let mine = c.pc.restartICE()
        c.sentCandidates = Set(mine.candidates)
        c.trickle = .init(active: false, inFlight: true, skipHost: true)
        let lines = ["a=ice-ufrag:\(mine.ufrag)", "a=ice-pwd:\(mine.pwd)"] + mine.candidates.map { "a=candidate:\($0)" }
        patch(c, lines, to: resource, what: "ICE restart PATCH", accepted: [200], failed: {}) { [weak self] lines in
            guard let self else { return }
            if let u = lines.first(where: { $0.hasPrefix("a=ice-ufrag:") }), let p = lines.first(where: { $0.hasPrefix("a=ice-pwd:") }) {
                c.pc.setRemoteCredentials(ufrag: String(u.dropFirst("a=ice-ufrag:".count)), pwd: String(p.dropFirst("a=ice-pwd:".count)))
            }
            c.pc.addRemoteCandidates(lines.filter { $0.hasPrefix("a=candidate:") }.map { String($0.dropFirst(2)) })
            c.trickle.active = true
            c.trickle.gatherDeadline = Instant.now() + .seconds(10)
            trickle(c)
            control.after(.seconds(10)) { [weak self] in self?.trickle(c) }
        }
    }

    /// The candidates among `all` the peer has not had yet; marks them sent.
    func unsent(_ c: ActiveCall, _ all: [String]) -> [String] {
        var new: [String] = []
        for candidate in all where !c.sentCandidates.contains(candidate) {
            c.sentCandidates.insert(candidate)
            new.append(candidate)
        }
        return new
    }

    // MARK: Incoming

    /// Takes an offer that ``SignallingServer`` has parsed and authorised: asks the state
    /// machine, answers, starts media. Call control; completes with the answer SDP and the
    /// call's resource id.
    func incoming(offer: SessionDescription, peerName: String, caller: Caller, glareWins: Bool, holdBackCandidates peerTrickles: Bool,
                  source: String, backChannel: String? = nil) -> Result<(answer: String, id: String), CallFailure> {
        for a in perform(.incoming(peer: peerName, glareWins: glareWins)) {
            if case .refuseIncoming(let why) = a { return .failure(.refused(why)) }
        }
        let config = self.config
        let answered = lock.withLock { machine.phase == .inCall(peer: peerName) }
        let id = randomHex(16)
        let media = makeMediaSession(config, sendingAllowed: answered)
        let pc: PeerConnection
        do { pc = try PeerConnection(configuration: connectionConfiguration, controlling: false, handlers: handlers(for: id, media: media)) }
        catch {
            perform(.remoteEnded(reason: .noTransport("\(error)")))
            perform(.ended)
            return .failure(.noTransport("\(error)"))
        }
        do {
            let holdBack = config.trickle && peerTrickles
            let (answer, session) = try JSEP.answer(offer: offer, local: localParameters(pc, withCandidates: !holdBack),
                                                    sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
            let c = ActiveCall(id: id, peerName: peerName, outgoing: false, creator: caller, pc: pc, media: media)
            c.remoteResource = backChannel
            if !holdBack { c.sentCandidates = Set(pc.localICE.candidates) }
            c.videoCodec = Device.describe(session)
            lock.withLock { call = c }
            pc.setRemote(session)
            startMedia(c)
            logger.info(answered ? "incoming call answered" : "incoming call ringing",
                        metadata: ["CALL_ID": "\(id)", "PEER": "\(peerName)", "from": "\(source)", "STATE": "\(answered ? "in-call" : "ringing")"])
            return .success((answer.text, id))
        } catch {
            pc.close(reason: "offer refused")
            mediaControl.async { media.stop() }
            perform(.remoteEnded(reason: .signallingFailed("\(error)")))
            perform(.ended)
            return .failure(.badOffer("\(error)"))
        }
    }

    /// The incoming call `id`, if `caller` created it (call control).
    func incomingCall(id: String, createdBy caller: Caller) -> ActiveCall? {
        lock.withLock {
            guard let c = call, !c.outgoing, c.id == id, c.creator == caller else { return nil }
            return c
        }
    }

    /// Call `id` if `caller` may change it (call control): the incoming call it created, or
    /// with `eitherDirection` (signed broker messages) also the call we placed to it.
    func call(id: String, of caller: Caller, eitherDirection: Bool) -> ActiveCall? {
        if let c = incomingCall(id: id, createdBy: caller) { return c }
        guard eitherDirection, case .peer(let name) = caller else { return nil }
        return lock.withLock {
            guard let c = call, c.outgoing, c.id == id, c.peerName == name else { return nil }
            return c
        }
    }

    /// Shows "peer offline" on the LED for three seconds, then the call state again (call control).
    private func showPeerOffline() {
        // After the press's own LED changes (idle again), which run first.
        control.async { [weak self] in self?.leds.show(.errorPeerOffline) }
        control.after(.seconds(3)) { [weak self] in
            guard let self else { return }
            let led = lock.withLock { machine.led }
            leds.show(led)
        }
    }

    /// `DELETE /call/ID` from the party that created it (call control).
    func remoteHungUp(id: String) {
        // The peer ended it: nothing to tell it back (a broker call has a resource both ways).
        lock.withLock { if call?.id == id { call?.remoteResource = nil } }
        perform(.remoteEnded(reason: .remoteHangup("DELETE")))
        end(id: id, reason: .remoteHangup("DELETE"), notifyPeer: true)
    }

    /// A trickle or ICE-restart fragment for an incoming call (call control): returns the
    /// lines to answer with (our new credentials and unsent candidates), and whether our
    /// gathering is over.
    func applyFragment(_ c: ActiveCall, ufrag: String?, pwd: String?, candidates: [String]) -> (lines: [String], complete: Bool) {
        let pc = c.pc
        var restartLines: [String] = []
        if let ufrag, let pwd, ufrag != pc.remoteUfrag {
            // The peer restarts ICE (RFC 8838 §4.4, RFC 9725 §4.4): so do we, and answer
            // with our new credentials.
            logger.info("ICE restart asked for by the peer", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)"])
            let mine = pc.restartICE()
            pc.setRemoteCredentials(ufrag: ufrag, pwd: pwd)
            c.sentCandidates = []
            restartLines = ["a=ice-ufrag:\(mine.ufrag)", "a=ice-pwd:\(mine.pwd)"]
        }
        // One batch, so the connection's per-message cap applies as well as its total.
        if !candidates.isEmpty { pc.addRemoteCandidates(candidates) }
        // Our own candidates the peer has not had (held back from the answer, or found by
        // gathering since) travel back in the response.
        let gathered = pc.gathered
        return (restartLines + unsent(c, pc.localICE.candidates + gathered.candidates).map { "a=candidate:\($0)" }, gathered.complete)
    }

    // MARK: Both directions

    private func makeMediaSession(_ config: DeviceConfig, sendingAllowed: Bool) -> MediaSession {
        let parts = self.parts
        return MediaSession(logger: logger, camera: parts.makeCamera(config), microphone: parts.makeMicrophone(config), speaker: parts.makeSpeaker(config),
                            videoSettings: videoSettings, sendingAllowed: sendingAllowed,
                            makeEncoder: { try parts.makeEncoder(config, $0) }, audioProcessor: parts.audioProcessor(config), screen: screen,
                            makeDecoder: { [logger] in try ScreenService.makeDecoder(config, logger: logger) })
    }

    /// Opens encoders and starts capture off call control: the offer or answer goes out
    /// without waiting for x264 to open.
    private func startMedia(_ c: ActiveCall) {
        let logger = self.logger
        let (media, pc, id) = (c.media, c.pc, c.id)
        mediaControl.async {
            do { try media.start(peerConnection: pc) } catch {
                logger.error("media start failed; the call goes on without it", metadata: ["CALL_ID": "\(id)", "REASON": "\(error)"])
            }
        }
    }

    /// Stops a call's media and closes its connection, after any pending media start.
    private func close(_ c: ActiveCall, reason: String) {
        let (media, pc) = (c.media, c.pc)
        mediaControl.async {
            media.stop()
            pc.close(reason: reason)
        }
    }

    private func handlers(for id: String, media: MediaSession) -> PeerConnectionHandlers {
        var h = media.handlers
        h.onClosed = { [weak self] reason in
            self?.onControlIfCurrent(id) { device, _ in
                device.perform(.remoteEnded(reason: .connectionClosed(reason)))
                device.end(id: id, reason: .connectionClosed(reason), notifyPeer: false)
            }
        }
        h.onGatheringChange = { [weak self] in
            self?.onControlIfCurrent(id) { device, c in device.trickle(c) }
        }
        media.onFirstRemoteMedia = { [weak self] in
            self?.onControlIfCurrent(id) { device, _ in device.perform(.mediaFlowing) }
        }
        return h
    }

    /// Runs `work` on call control if call `id` is still the current one then.
    private func onControlIfCurrent(_ id: String, _ work: @escaping @Sendable (Device, ActiveCall) -> Void) {
        onControl { [weak self] in
            guard let self, let c = self.lock.withLock({ self.call?.id == id ? self.call : nil }) else { return }
            work(self, c)
        }
    }

    /// Ends call `id` (call control): stops media, tells the peer (RTCP BYE, DTLS
    /// close_notify and, for calls we placed, DELETE on the peer's resource).
    func end(id: String, reason: EndReason, notifyPeer: Bool) {
        let c: ActiveCall? = lock.withLock {
            guard let c = call, c.id == id else { return nil }
            call = nil
            return c
        }
        guard let c else { return }
        c.trickle.active = false
        metrics.recordSetup(c.pc.stats.timeline, offerSentAt: c.offerSentAt)
        close(c, reason: reason.description)
        if notifyPeer, let url = c.remoteResource { signalling.delete(url, token: c.remoteToken ?? "") }
        lock.withLock { lastCall = CallSummary(id: c.id, peer: c.peerName, endReason: reason.description) }
        metrics.callOutcome(reason.outcome)
        perform(.ended)
        logger.info("call ended", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)", "STATE": "idle", "REASON": "\(reason)"])
    }

    private func callLogger(_ c: ActiveCall) -> Logger {
        var log = logger
        log[metadataKey: "CALL_ID"] = "\(c.id)"
        log[metadataKey: "PEER"] = "\(c.peerName)"
        return log
    }

    // MARK: Configuration

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
            let (username, password) = t.credentials(now: wallClockMs() / 1000, deviceName: config.name)
            return TransportAddress(host: t.host, port: t.port).map {
                TURNServer(address: $0, transport: TURNServer.Transport(rawValue: t.transport) ?? .udp, username: username, password: password,
                           caFile: t.ca)
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
        lp.videoRTXSSRC = pc.localVideoRTXSSRC
        return lp
    }

    static func describe(_ s: NegotiatedSession) -> String? {
        guard let v = s.video else { return nil }
        return "\(v.codec.name) profile-level-id=\(v.codec.parameter("profile-level-id") ?? "-") pt=\(v.codec.payloadType)"
            + (v.rtxPayloadType.map { " rtx=\($0)" } ?? "")
    }

    /// Takes a new configuration (SIGHUP). The call in progress keeps the settings it
    /// started with; peers, tokens, answering and media settings apply to the next call.
    /// Returns what could not change without a restart.
    public func reload(_ new: DeviceConfig) -> [String] {
        var needsRestart: [String] = []
        let led = lock.withLock { () -> LEDPattern in
            let old = _config
            if old.signallingHost != new.signallingHost || old.signallingPort != new.signallingPort { needsRestart.append("signalling.listen") }
            if old.controlSocket != new.controlSocket { needsRestart.append("control.socket") }
            if old.stateDirectory != new.stateDirectory { needsRestart.append("device.state_directory") }
            if old.metricsListen != new.metricsListen { needsRestart.append("metrics.listen") }
            if old.gpio != new.gpio { needsRestart.append("gpio") }
            if old.videoEncoder != new.videoEncoder || old.videoEncoderDevice != new.videoEncoderDevice { needsRestart.append("video.encoder") }
            if old.broker != new.broker { needsRestart.append("broker") }
            _config = new
            machine.peers = new.peers.map(\.name)
            machine.autoAnswer = new.autoAnswer
            machine.ringTimeout = .seconds(Int64(new.ringTimeoutSeconds))
            return machine.led
        }
        leds.show(led)
        signalling.broker?.reload(new)
        return needsRestart
    }

    // MARK: Readers

    /// A snapshot of the call in progress and the last one, for status.
    var snapshot: (call: ActiveCall?, last: CallSummary?) { lock.withLock { (call, lastCall) } }

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
