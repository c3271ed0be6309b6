import DTLS
import Logging
import NetworkCore
import SignedSignalling
#if canImport(Glibc)
import Glibc
#endif

/// The MQTT adapter of signalling: offers, answers, trickle and ICE-restart fragments and
/// hang-ups as signed messages (``SignalMessage``) through a broker, in both directions.
///
/// Each device subscribes to one inbox topic, `PREFIX/inbox/FINGERPRINT` (its certificate's
/// SHA-256, lower-case hex), and publishes its presence, retained, on
/// `PREFIX/presence/FINGERPRINT` (`online`; the last will says `offline`). Requests carry
/// a nonce; the reply names it, and a request with no reply in time fails. A message that
/// does not verify (unpinned signer, bad signature, replay, stale, not for us) is refused,
/// counted by reason and logged with who and why; the call in progress is not touched.
///
/// Inbound requests go to the same handlers as the HTTP routes (``SignallingServer``), with
/// the pinned peer as the caller: call control cannot tell the adapters apart.
///
/// With `[broker] standby = true` a second connection (the standby link) stays up to
/// another broker of the list, subscribed like the first: when the primary's broker
/// dies, signalling moves to the standby at once instead of waiting for a new connect
/// (which on a NATS cluster waits for JetStream to re-elect the leader of its session
/// records, 3–9 s). Messages are taken from the link in use only (each arrives on both).
final class BrokerSignalling: @unchecked Sendable {
    /// A call resource reached through the broker: `mqtt:FINGERPRINT/CALLID`.
    struct Target: Equatable, Sendable {
        var fingerprint: [UInt8]
        var call: String
        init?(resource: String) {
            guard resource.hasPrefix("mqtt:") else { return nil }
            let rest = resource.dropFirst(5)
            guard let slash = rest.firstIndex(of: "/"), let fp = unhex(String(rest[..<slash])), fp.count == 32 else { return nil }
            fingerprint = fp
            call = String(rest[rest.index(after: slash)...])
        }
        init(fingerprint: [UInt8], call: String) { self.fingerprint = fingerprint; self.call = call }
        var resource: String { "mqtt:\(hex(fingerprint))/\(call)" }
    }

    enum Presence: String, Sendable { case unknown, online, offline }

    /// The primary link, then the standby link when configured.
    let links: [MQTTClient]
    /// The link signalling goes through: the primary while it is up, else the standby.
    private var active: MQTTClient? { links.first { $0.connectedURL != nil } }
    private let presenceTopic: String
    private let stopping = Locked(false)
    let identity: DTLSCertificate
    let certificateDER: [UInt8]
    let logger: Logger
    let metrics: DeviceMetrics
    let prefix: String
    let inbox: String
    /// Set after init (the server needs the device, the device needs this).
    var server: SignallingServer?
    /// Told when the broker connection comes and goes (the fault LED).
    var onConnectivity: (@Sendable (Bool) -> Void)?
    /// The most requests waiting for a reply.
    static let maxPending = 64

    private struct Pending {
        var peer: [UInt8]
        var deadline: Instant
        var completion: SignalCompletion
        var sentAt: Instant
    }

    private struct State {
        var verifier: SignalVerifier
        var pending: [[UInt8]: Pending] = [:]
        /// Pinned fingerprints (hex) of peers to their names, for presence.
        var peersByHex: [String: String] = [:]
        var presence: [String: Presence] = [:]
        var refused: [String: Int] = [:]
        /// Brokers whose failure has been logged in this outage (once each).
        var outageLogged: Set<String> = []
        var roundTripsMs: [Double] = []
        /// Messages signed while no broker was connected (a reconnect after an address
        /// change), sent once one is: bounded, and each still bound by its deadline.
        var outbox: [(message: SignalMessage, until: Instant)] = []
    }
    static let maxOutbox = 32
    private let state: Locked<State>

    init(config: DeviceConfig, broker: BrokerConfig, identity: DTLSCertificate, logger: Logger, metrics: DeviceMetrics) {
        self.identity = identity
        self.certificateDER = identity.der
        self.logger = logger
        self.metrics = metrics
        self.prefix = broker.topicPrefix
        let me = hex(identity.sha256)
        inbox = "\(broker.topicPrefix)/inbox/\(me)"
        var s = State(verifier: SignalVerifier(me: identity.sha256, pinned: [:], windowMs: Int64(broker.replayWindowSeconds) * 1000))
        Self.pin(config, into: &s)
        let presenceTopics = s.peersByHex.keys.sorted().map { "\(broker.topicPrefix)/presence/\($0)" }
        state = Locked(s)
        presenceTopic = "\(broker.topicPrefix)/presence/\(me)"
        let primary = MQTTClient.Settings(
            urls: broker.urls, ca: broker.ca, certificate: broker.certificate, key: broker.key,
            username: broker.username, password: broker.password, clientID: "vp-" + me.prefix(20),
            keepaliveSeconds: broker.keepaliveSeconds, presenceTopic: presenceTopic,
            subscriptions: [inbox] + presenceTopics + (broker.standby ? [presenceTopic] : []))
        if broker.standby {
            // The standby starts its list one further on, so the two links sit on two
            // brokers; each also reads our own presence, to put `online` back when the
            // other link's will (its TCP connection dropped, its broker alive) said `offline`.
            var standby = primary
            standby.urls = Array(broker.urls.dropFirst() + broker.urls.prefix(1))
            standby.clientID += "-s"
            standby.threadName = "mqtt-standby"
            links = [MQTTClient(settings: primary), MQTTClient(settings: standby)]
        } else {
            links = [MQTTClient(settings: primary)]
        }
        for name in s.peersByHex.values { metrics.peerPresence(name, .unknown) }
    }

    private static func pin(_ config: DeviceConfig, into s: inout State) {
        var pinned: [[UInt8]: String] = [:]
        var byHex: [String: String] = [:]
        for p in config.peers {
            guard let fp = p.sha256Fingerprint else { continue }
            pinned[fp] = p.name
            byHex[hex(fp)] = p.name
        }
        s.verifier.pinned = pinned
        s.peersByHex = byHex
        for name in byHex.values where s.presence[name] == nil { s.presence[name] = .unknown }
    }

    /// New peers and pins apply to the next message (SIGHUP). Presence topics of peers
    /// added later are subscribed at the next connect.
    func reload(_ config: DeviceConfig) {
        state.withLock { Self.pin(config, into: &$0) }
    }

    func start() throws(HTTPError) {
        for (i, link) in links.enumerated() {
            link.onMessage = { [weak self] topic, payload in self?.received(topic: topic, payload: payload, link: i) }
            link.onEvent = { [weak self] event in self?.connectionEvent(event, link: i) }
            if i == 0 { link.onTick = { [weak self] in self?.expire() } }
            try link.start()
        }
    }

    func stop() {
        stopping.withLock { $0 = true }
        for link in links.reversed() { link.stop() }
    }

    /// The peer's presence as its retained presence topic last said.
    func presence(of peer: String) -> Presence { state.current.presence[peer] ?? .unknown }

    /// For status: connection, presence by peer, refusals by reason, signalling round trips.
    var snapshot: (url: BrokerURL?, presence: [String: Presence], refused: [String: Int], traffic: (out: Int, in: Int, connects: Int)) {
        let s = state.current
        let t = links.reduce((out: 0, in: 0, connects: 0)) { a, l in let x = l.traffic; return (a.out + x.out, a.in + x.in, a.connects + x.connects) }
        return (active?.connectedURL, s.presence, s.refused, t)
    }

    /// Round-trip times (ms) of requests answered through the broker, the last 256.
    var roundTrips: [Double] { state.current.roundTripsMs }

    /// The standby link's broker when it is connected and not the one in use.
    var standbyURL: BrokerURL? { links.count > 1 && links[0].connectedURL != nil ? links[1].connectedURL : nil }

    // MARK: Outbound (the port's adapter)

    func sendOffer(_ sdp: String, to peer: PeerConfig, ourName: String, callID: String, completion: @escaping SignalCompletion) {
        guard let fp = peer.sha256Fingerprint else { completion(.failure(HTTPError("\(peer.name) has no sha-256 fingerprint pinned"))); return }
        request(.offer, to: fp, call: callID, body: sdp, name: ourName, timeout: .seconds(5), completion: completion)
    }

    func patch(_ lines: [String], to target: Target, completion: @escaping SignalCompletion) {
        let body = lines.isEmpty ? "" : lines.joined(separator: "\r\n") + "\r\n"
        request(.patch, to: target.fingerprint, call: target.call, body: body, name: nil, timeout: .seconds(3), completion: completion)
    }

    func delete(_ target: Target) {
        request(.delete, to: target.fingerprint, call: target.call, body: "", name: nil, timeout: nil, completion: nil)
    }

    private func request(_ kind: SignalMessage.Kind, to fp: [UInt8], call: String, body: String, name: String?, timeout: Duration?,
                         completion: SignalCompletion?) {
        let nonce = secureRandomBytes(16)
        let m = SignalMessage(kind: kind, from: identity.sha256, to: fp, nonce: nonce, time: wallClockMs(), call: call, name: name, body: body)
        if let completion, let timeout {
            let queued = state.withLock { s -> Bool in
                guard s.pending.count < Self.maxPending else { return false }
                s.pending[nonce] = Pending(peer: fp, deadline: .now() + timeout, completion: completion, sentAt: .now())
                return true
            }
            guard queued else { completion(.failure(HTTPError("too many signalling requests waiting for the broker"))); return }
        }
        if active == nil {
            // Reconnecting: hold it briefly rather than fail a call over a broker hiccup.
            let held = state.withLock { s -> Bool in
                guard s.outbox.count < Self.maxOutbox else { return false }
                s.outbox.append((m, .now() + (timeout ?? .seconds(3))))
                return true
            }
            if held { return }
        }
        guard publish(m) else {
            let c = state.withLock { $0.pending.removeValue(forKey: nonce)?.completion }
            let why = active == nil ? "not connected to any broker" : "too many messages waiting for the broker"
            c?(.failure(HTTPError("\(kind.rawValue) not sent: \(why)")))
            return
        }
    }

    /// The device's addresses changed: the broker connection may be dead; make a new one.
    func addressesChanged() { for link in links { link.reconnect() } }

    /// Sends what was held while disconnected (the mqtt thread, once connected).
    private func flushOutbox() {
        let now = Instant.now()
        let held = state.withLock { s -> [SignalMessage] in
            defer { s.outbox = [] }
            return s.outbox.filter { $0.until > now }.map(\.message)
        }
        for m in held { _ = publish(m) }
    }

    private func publish(_ m: SignalMessage) -> Bool {
        let wire: [UInt8]
        do { wire = try m.encode(certificate: certificateDER) { try identity.sign($0) } } catch {
            logger.error("cannot sign a signalling message", metadata: ["REASON": "\(error)"])
            return false
        }
        let ok = active?.publish(topic: "\(prefix)/inbox/\(hex(m.to))", payload: wire)
        if ok == true { metrics.brokerMessage(sent: true) }
        return ok == true
    }

    /// Requests whose reply did not come in time fail (the `mqtt` thread, every ≤ 100 ms).
    private func expire() {
        let now = Instant.now()
        let late = state.withLock { s -> [Pending] in
            let gone = s.pending.filter { $0.value.deadline <= now }
            for k in gone.keys { s.pending[k] = nil }
            return Array(gone.values)
        }
        for p in late { p.completion(.failure(HTTPError("no reply through the broker within the deadline"))) }
    }

    // MARK: Inbound (the mqtt thread)

    private func received(topic: String, payload: [UInt8], link: Int) {
        // Each message reaches both links: the one in use takes it (a second copy of a
        // request would fail as a replay, one of a presence could flip it back). Right
        // after a broker loss that is the standby. While no link is ready yet (between a
        // SUBACK and the last one, retained presence comes in), any link's counts, as with
        // one link. Our own presence counts from either.
        if topic == presenceTopic {
            presenceChanged(topic: topic, payload: payload)
            return
        }
        if links.count > 1, let inUse = active, inUse !== links[link] { return }
        if topic != inbox {
            presenceChanged(topic: topic, payload: payload)
            return
        }
        metrics.brokerMessage(sent: false)
        let result = state.withLock { $0.verifier.open(payload, nowMs: wallClockMs()) }
        let peer: String, m: SignalMessage
        switch result {
        case .failure(let why):
            let first = state.withLock { s -> Bool in s.refused[why.label, default: 0] += 1; return s.refused[why.label] == 1 }
            metrics.signallingRefused(why.label)
            // Logged with who and why; a flood is rate limited per reason (first one always).
            var meta: Logger.Metadata = ["REASON": "\(why)", "kind": "\(why.label)", "from": "broker"]
            if let p = why.peer { meta["PEER"] = "\(p)" }
            if first || (server?.device.rateLimiter.shouldLog(source: "broker-" + why.label) ?? true) {
                logger.warning("refused a signalling message from the broker", metadata: meta)
            }
            return
        case .success(let r):
            (peer, m) = (r.peer, r.message)
        }
        guard let server else { return }
        let back = Target(fingerprint: m.from, call: m.call)
        switch m.kind {
        case .reply:
            guard let ref = m.ref else { return }
            let p = state.withLock { s -> Pending? in
                guard let p = s.pending[ref], p.peer == m.from else { return nil }
                s.pending[ref] = nil
                let d = (Instant.now() - p.sentAt).components
                s.roundTripsMs.append(Double(d.seconds) * 1000 + Double(d.attoseconds) / 1e15)
                if s.roundTripsMs.count > 256 { s.roundTripsMs.removeFirst() }
                return p
            }
            guard let p else { return }  // late, or not ours: nothing waits for it
            let resource = m.location.map { Target(fingerprint: m.from, call: $0).resource }
            p.completion(.success(SignalReply(status: m.status ?? 500, body: m.body, resource: resource, glare: m.glare == "ours")))
        case .offer:
            server.takeOffer(text: m.body, caller: .peer(name: peer), claimedName: nil, source: "broker", backChannel: back.resource) { [weak self] r in
                self?.reply(to: m, r)
            }
        case .patch:
            server.takeFragment(id: m.call, caller: .peer(name: peer), text: m.body, source: "broker", eitherDirection: true) { [weak self] r in
                self?.reply(to: m, r)
            }
        case .delete:
            server.takeHangup(id: m.call, caller: .peer(name: peer), eitherDirection: true) { [weak self] r in
                self?.reply(to: m, r)
            }
        }
    }

    private func reply(to request: SignalMessage, _ r: HTTPResponse) {
        var m = SignalMessage(kind: .reply, from: identity.sha256, to: request.from, nonce: secureRandomBytes(16), time: wallClockMs(),
                              call: request.call, ref: request.nonce, status: r.status, body: r.bodyText)
        if let loc = r.header("Location"), loc.hasPrefix("/call/") { m.location = String(loc.dropFirst(6)) }
        if r.header(SignallingServer.glareHeader) != nil { m.glare = "ours" }
        if !publish(m) {
            logger.warning("reply not sent: broker connection down or busy", metadata: ["REASON": "\(request.kind.rawValue) \(r.status)"])
        }
    }

    private func presenceChanged(topic: String, payload: [UInt8]) {
        let prefix = "\(self.prefix)/presence/"
        guard topic.hasPrefix(prefix) else { return }
        let fp = String(topic.dropFirst(prefix.count))
        let text = String(decoding: payload.prefix(16), as: UTF8.self)
        if topic == presenceTopic {
            // A link's will fired while we are still up through the other one.
            if text == "offline", !stopping.current, let link = active {
                _ = link.publish(topic: presenceTopic, payload: Array("online".utf8), retain: true, qos: 1)
            }
            return
        }
        let value: Presence = text == "online" ? .online : text == "offline" ? .offline : .unknown
        let changed = state.withLock { s -> String? in
            guard let name = s.peersByHex[fp], s.presence[name] != value else { return nil }
            s.presence[name] = value
            return name
        }
        if let name = changed {
            metrics.peerPresence(name, value)
            logger.info("peer presence", metadata: ["PEER": "\(name)", "presence": "\(value.rawValue)"])
        }
    }

    private func connectionEvent(_ event: MQTTClient.Event, link: Int) {
        let others = links.indices.contains { $0 != link && links[$0].connectedURL != nil }
        if others {
            // With a standby, a link that comes or goes while the other is up is not an outage.
            switch event {
            case .connected(let url):
                logger.notice(link > 0 ? "standby broker connection up" : "connected to broker; the standby link is up too",
                              metadata: ["broker": "\(url)"])
                metrics.brokerConnected(true)
                onConnectivity?(true)
                state.withLock { $0.outageLogged = [] }
                flushOutbox()
                return
            case .disconnected(let url, let reason):
                logger.warning(link > 0 ? "standby broker connection lost; reconnecting it" : "broker connection lost; signalling goes on through the standby",
                               metadata: ["broker": "\(url)", "REASON": "\(reason)"])
                return
            case .attemptFailed(let url, let reason):
                let first = state.withLock { $0.outageLogged.insert("standby " + url.description).inserted }
                if first { logger.warning("cannot connect the \(link > 0 ? "standby" : "primary") link to broker", metadata: ["broker": "\(url)", "REASON": "\(reason)"]) }
                return
            }
        }
        switch event {
        case .connected(let url):
            let wasDown = state.withLock { s -> Bool in defer { s.outageLogged = [] }; return !s.outageLogged.isEmpty }
            logger.notice(wasDown ? "broker connection back" : "connected to broker", metadata: ["broker": "\(url)"])
            metrics.brokerConnected(true)
            onConnectivity?(true)
            flushOutbox()
        case .disconnected(let url, let reason):
            metrics.brokerConnected(false)
            state.withLock { _ = $0.outageLogged.insert(url.description) }
            logger.warning("broker connection lost; trying the next broker", metadata: ["broker": "\(url)", "REASON": "\(reason)"])
            onConnectivity?(false)
            // Requests already sent may have gone with the connection; their deadlines
            // fail them if no reply comes through the next one.
        case .attemptFailed(let url, let reason):
            let first = state.withLock { $0.outageLogged.insert(url.description).inserted }
            if first { logger.error("cannot connect to broker", metadata: ["broker": "\(url)", "REASON": "\(reason)"]) }
            onConnectivity?(false)
        }
    }
}

/// Milliseconds since 1970 (signalling timestamps are compared across devices).
func wallClockMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

extension PeerConfig {
    /// The pinned SHA-256 fingerprint as bytes, when the pin is a SHA-256 one.
    var sha256Fingerprint: [UInt8]? {
        guard let f = fingerprint else { return nil }
        let parts = f.split(separator: " ")
        guard parts.count == 2, parts[0].lowercased() == "sha-256", let d = Hex.decode(String(parts[1])), d.count == 32 else { return nil }
        return d
    }
}
