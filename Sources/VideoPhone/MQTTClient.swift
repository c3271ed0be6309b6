import CMosquitto
import Logging
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A broker to connect to: `mqtts://HOST:PORT` (TLS) or `mqtt://HOST:PORT`.
public struct BrokerURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var tls: Bool

    public init?(_ text: String) {
        let tls = text.hasPrefix("mqtts://")
        guard tls || text.hasPrefix("mqtt://") else { return nil }
        let rest = String(text.dropFirst(tls ? 8 : 7))
        guard !rest.contains("/"), !rest.isEmpty else { return nil }
        if let (h, p) = splitHostPort(rest), !h.isEmpty, p != 0 {
            host = h; port = p
        } else if !rest.contains(":") {
            host = rest; port = tls ? 8883 : 1883
        } else if rest.hasPrefix("["), rest.hasSuffix("]"), rest.count > 2 {
            host = String(rest.dropFirst().dropLast()); port = tls ? 8883 : 1883
        } else {
            return nil
        }
        self.tls = tls
    }

    public var description: String { "\(tls ? "mqtts" : "mqtt")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// An MQTT 3.1.1 client over libmosquitto: one outbound connection (TLS when the URL says
/// `mqtts`) to the first broker of a list that answers, kept up with keepalive, and moved
/// to the next broker when it drops, with exponential backoff and jitter once the whole
/// list has failed. A last will publishes the device's presence as `offline`.
///
/// Every libmosquitto call but ``publish(topic:payload:retain:)`` happens on the client's
/// own `mqtt` thread (libmosquitto is told it is threaded: a publish from another thread
/// is queued and wakes that thread's loop). Publishes waiting for the broker are bounded.
final class MQTTClient: @unchecked Sendable {
    struct Settings: Sendable {
        var urls: [BrokerURL]
        var ca: String?
        var certificate: String?
        var key: String?
        var username: String?
        var password: String?
        var clientID: String
        var keepaliveSeconds: Int = 60
        /// Retained presence topic: `online` after each connect, `offline` as the will.
        var presenceTopic: String
        var subscriptions: [String]
        /// How long a connect attempt may take before the next broker is tried.
        var connectTimeout: Duration = .seconds(3)
        /// QoS of the subscriptions and of ``publish(topic:payload:retain:)``. 0: a clean
        /// session keeps nothing for an absent device anyway, and QoS 1 costs brokers that
        /// keep MQTT state in a replicated log (NATS' JetStream) a replicated write per
        /// message and a replicated consumer per subscription, both stuck while that log
        /// re-elects its leaders after a node loss. Presence and the will stay QoS 1.
        var qos: Int32 = 0
        /// The thread's name (`mqtt`; `mqtt-standby` for the standby link).
        var threadName = "mqtt"
    }

    /// Connection changes: connected to a URL, or lost (with why).
    enum Event: Sendable {
        case connected(BrokerURL)
        case disconnected(BrokerURL, reason: String)
        /// A connect attempt failed (logged once per broker per outage by the owner).
        case attemptFailed(BrokerURL, reason: String)
    }

    let settings: Settings
    /// A message on a subscribed topic (on the `mqtt` thread).
    var onMessage: (@Sendable (String, [UInt8]) -> Void)?
    var onEvent: (@Sendable (Event) -> Void)?
    /// Runs on the `mqtt` thread every loop (≤ 100 ms apart): timeouts of the owner.
    var onTick: (@Sendable () -> Void)?

    /// The most publishes that may wait for the broker's acknowledgement.
    static let maxPending = 64
    private let state = Locked(Shared())
    private let loop = DeviceThread()
    /// Set from any thread: drop the connection and make a new one to the same broker.
    private let reconnectAsked = Locked(false)
    /// The libmosquitto handle. The mqtt thread uses it as it likes (the handle outlives the
    /// thread); publishers on other threads hold `handleLock`, under which `stop()` destroys it.
    private var mosq: OpaquePointer?
    private let handleLock = Lock()

    struct Shared {
        var connected: BrokerURL?
        var pending = 0
        var bytesOut = 0
        var bytesIn = 0
        var connects = 0
        /// libmosquitto's last error-level log line (an OpenSSL reason, say), for the
        /// next failure's reason.
        var lastError: String?
    }

    private static let libraryInit: Void = { mosquitto_lib_init(); () }()

    init(settings: Settings) {
        self.settings = settings
    }

    var connectedURL: BrokerURL? { state.current.connected }
    /// Signalling payload bytes sent and received (not MQTT framing or TLS).
    var traffic: (out: Int, in: Int, connects: Int) { let s = state.current; return (s.bytesOut, s.bytesIn, s.connects) }

    /// Starts the `mqtt` thread; it connects and stays connected until ``stop()``.
    func start() throws(HTTPError) {
        _ = Self.libraryInit
        guard let m = mosquitto_new(settings.clientID, true, Unmanaged.passUnretained(self).toOpaque()) else {
            throw HTTPError("mosquitto_new failed")
        }
        handleLock.withLock { mosq = m }
        mosquitto_threaded_set(m, true)
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
        // Signalling is a few small messages in a row (answer, trickle, replies): Nagle would
        // hold each behind the previous one's ACK (tens of ms per hop).
        mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1)
        if settings.urls.contains(where: \.tls) {
            let rc = mosquitto_tls_set(m, settings.ca, nil, settings.certificate, settings.key, nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw HTTPError("broker TLS settings refused: \(Self.describe(rc))") }
            mosquitto_tls_opts_set(m, 1, "tlsv1.2", nil)
        }
        if let user = settings.username {
            mosquitto_username_pw_set(m, user, settings.password)
        }
        let offline = Array("offline".utf8)
        mosquitto_will_set(m, settings.presenceTopic, Int32(offline.count), offline, 1, true)
        mosquitto_connect_callback_set(m) { _, obj, rc in
            Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue().connected(rc: rc)
        }
        mosquitto_subscribe_callback_set(m) { _, obj, _, count, granted in
            // 0x80 in a granted QoS is the broker's refusal (MQTT 3.1.1 §3.9.3).
            let refused = (0..<Int(count)).contains { granted?[$0] == 0x80 }
            Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue().subscribed(grantedFailure: refused)
        }
        mosquitto_disconnect_callback_set(m) { _, obj, rc in
            Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue().dropped(rc: rc)
        }
        mosquitto_publish_callback_set(m) { _, obj, _ in
            Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue().state.withLock { $0.pending = max(0, $0.pending - 1) }
        }
        mosquitto_log_callback_set(m) { _, obj, level, text in
            guard level & Int32(MOSQ_LOG_ERR) != 0, let text else { return }
            let line = String(String(cString: text).prefix(200))
            Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue().state.withLock { $0.lastError = line }
        }
        mosquitto_message_callback_set(m) { _, obj, msg in
            guard let msg = msg?.pointee, let t = msg.topic else { return }
            let client = Unmanaged<MQTTClient>.fromOpaque(obj!).takeUnretainedValue()
            let n = Int(max(0, msg.payloadlen))
            let payload = n > 0 ? Array(UnsafeRawBufferPointer(start: msg.payload, count: n)) : []
            client.state.withLock { $0.bytesIn += n }
            client.onMessage?(String(cString: t), payload)
        }
        loop.start(name: settings.threadName) { [self] in run(m) }
    }

    /// Publishes `payload` (at the settings' QoS unless `qos` says otherwise); false when
    /// not connected or too many are waiting.
    @discardableResult
    func publish(topic: String, payload: [UInt8], retain: Bool = false, qos: Int32? = nil) -> Bool {
        // Held across the publish: `stop()` on another thread cannot destroy the handle under
        // it. (mosquitto_publish only queues and wakes the loop, so the hold is short.)
        handleLock.withLock { () -> Bool in
            guard let m = mosq else { return false }
            let ok = state.withLock { s -> Bool in
                guard s.connected != nil, s.pending < Self.maxPending else { return false }
                s.pending += 1
                s.bytesOut += payload.count
                return true
            }
            guard ok else { return false }
            let rc = mosquitto_publish(m, nil, topic, Int32(payload.count), payload, qos ?? settings.qos, retain)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                state.withLock { $0.pending = max(0, $0.pending - 1) }
                return false
            }
            return true
        }
    }

    /// Drops the connection and connects again, to the same broker first: the device's
    /// addresses changed, so the old TCP connection may be dead without knowing it yet.
    ///
    /// The link counts as down from this call on, so a message sent right after it (the ICE
    /// restart that follows an address change) waits for the new connection instead of
    /// going into the old one, where a QoS 0 publish would be lost with it.
    func reconnect() {
        reconnectAsked.withLock { $0 = true }
        state.withLock { $0.connected = nil }
    }

    /// Publishes `offline` (a clean disconnect sends no will), disconnects and ends the thread.
    func stop() {
        guard let m = handleLock.withLock({ mosq }) else { return }
        loop.stop()  // outside the lock: the thread may be publishing as it ends
        handleLock.withLock {
            state.withLock { $0.connected = nil }  // publishers from here on are refused
            mosquitto_destroy(m)
            mosq = nil
        }
    }

    // MARK: The mqtt thread

    private enum Phase { case idle(until: Instant), connecting(BrokerURL, deadline: Instant), connected(BrokerURL) }
    /// SUBACKs still due on this connection (mqtt thread only).
    private var awaitingSubscriptions = 0
    private var phase: Phase = .idle(until: .now())
    /// Which URL is next, and how many full rounds of the list have failed in a row.
    private var next = 0
    private var failedRounds = 0
    private var triedThisRound = 0

    private func run(_ m: OpaquePointer) {
        while loop.isRunning {
            let now = Instant.now()
            if reconnectAsked.withLock({ r -> Bool in defer { r = false }; return r }), case .connected(let url) = phase {
                state.withLock { $0.connected = nil; $0.pending = 0 }
                phase = .idle(until: now)
                next = settings.urls.firstIndex(of: url) ?? 0
                triedThisRound = 0
                mosquitto_disconnect(m)
                onEvent?(.disconnected(url, reason: "addresses changed; reconnecting"))
            }
            switch phase {
            case .idle(let until) where now >= until:
                attempt(m)
            case .connecting(let url, let deadline) where now >= deadline:
                mosquitto_disconnect(m)
                failed(url, "no answer within \(settings.connectTimeout)")
            default: break
            }
            let rc: Int32
            if case .idle = phase {
                rc = MOSQ_ERR_SUCCESS.rawValue
                usleep(50_000)
            } else {
                rc = mosquitto_loop(m, 100, 1)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                switch phase {
                case .connecting(let url, _): failed(url, Self.describe(rc))
                case .connected(let url): lost(url, Self.describe(rc))
                case .idle: break
                }
            }
            onTick?()
        }
        if case .connected = phase {
            let offline = Array("offline".utf8)
            mosquitto_publish(m, nil, settings.presenceTopic, Int32(offline.count), offline, 1, true)
            for _ in 0..<5 { _ = mosquitto_loop(m, 20, 1) }
            mosquitto_disconnect(m)
            _ = mosquitto_loop(m, 20, 1)
        }
    }

    private func attempt(_ m: OpaquePointer) {
        let url = settings.urls[next % settings.urls.count]
        next = (next + 1) % settings.urls.count
        triedThisRound += 1
        let rc = mosquitto_connect_async(m, url.host, Int32(url.port), Int32(settings.keepaliveSeconds))
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            failed(url, Self.describe(rc))
        } else {
            phase = .connecting(url, deadline: .now() + settings.connectTimeout)
        }
    }

    /// After a failed attempt: the next broker at once while the round lasts, then back off
    /// (0.5 s doubling to 30 s, each wait drawn from its upper half: jitter, so a fleet
    /// that lost a node does not come back in step).
    private func failed(_ url: BrokerURL, _ reason: String) {
        let detail = state.withLock { s -> String? in defer { s.lastError = nil }; return s.lastError }
        onEvent?(.attemptFailed(url, reason: detail.map { "\(reason) (\($0))" } ?? reason))
        var delay = Duration.milliseconds(Int64.random(in: 50...250))
        if triedThisRound >= settings.urls.count {
            triedThisRound = 0
            failedRounds += 1
            let capMs = min(30_000, 500 << min(failedRounds - 1, 6))
            delay = .milliseconds(Int64.random(in: Int64(capMs / 2)...Int64(capMs)))
        }
        phase = .idle(until: .now() + delay)
    }

    private func lost(_ url: BrokerURL, _ reason: String) {
        state.withLock { $0.connected = nil; $0.pending = 0 }
        onEvent?(.disconnected(url, reason: reason))
        // A node that was up a moment ago may be gone: start the round at the next one.
        next = ((settings.urls.firstIndex(of: url) ?? 0) + 1) % settings.urls.count
        triedThisRound = 0
        failedRounds = 0
        phase = .idle(until: .now() + .milliseconds(Int64.random(in: 50...250)))
    }

    /// CONNACK (on the mqtt thread, inside mosquitto_loop).
    private func connected(rc: Int32) {
        guard case .connecting(let url, _) = phase else { return }
        guard rc == 0 else {
            mosquitto_disconnect(mosq)
            failed(url, "broker refused the connection: \(String(cString: mosquitto_connack_string(rc)))")
            return
        }
        phase = .connected(url)
        triedThisRound = 0
        failedRounds = 0
        // Try this broker first next time too.
        next = settings.urls.firstIndex(of: url) ?? 0
        // Reachable only once the broker has acknowledged the inbox subscription: with a
        // clean session, a message published to it before the SUBACK is dropped (seen with
        // NATS after a node loss, its JetStream still re-electing: the peer's offer vanished).
        awaitingSubscriptions = settings.subscriptions.count
        for topic in settings.subscriptions { mosquitto_subscribe(mosq, nil, topic, settings.qos) }
        if awaitingSubscriptions == 0 { ready(url) }
    }

    /// SUBACK (on the mqtt thread): when the last one is in, the device is reachable.
    private func subscribed(grantedFailure: Bool) {
        guard case .connected(let url) = phase, awaitingSubscriptions > 0 else { return }
        if grantedFailure {
            mosquitto_disconnect(mosq)
            lost(url, "broker refused the inbox subscription")
            return
        }
        awaitingSubscriptions -= 1
        if awaitingSubscriptions == 0 { ready(url) }
    }

    private func ready(_ url: BrokerURL) {
        state.withLock { $0.connected = url; $0.pending = 0; $0.connects += 1 }
        let online = Array("online".utf8)
        mosquitto_publish(mosq, nil, settings.presenceTopic, Int32(online.count), online, 1, true)
        onEvent?(.connected(url))
    }

    /// The connection ended (on the mqtt thread).
    private func dropped(rc: Int32) {
        switch phase {
        case .connected(let url): lost(url, rc == 0 ? "disconnected" : Self.describe(rc))
        case .connecting(let url, _): failed(url, Self.describe(rc))
        case .idle: break
        }
    }

    static func describe(_ rc: Int32) -> String {
        if rc == MOSQ_ERR_ERRNO.rawValue { return String(cString: strerror(errno)) }
        return String(cString: mosquitto_strerror(rc))
    }
}
