import NetworkCore
import STUN

/// A TURN client (RFC 8656) for one allocation, with no I/O: the owner passes in what
/// arrives from the server and the time; the client returns what to send to the server
/// and what it learned. Long-term credentials (401 → realm and nonce → signed retry,
/// 438 → fresh nonce), allocation refresh, permissions and channel bindings, Send and
/// Data indications and ChannelData, for UDP relaying over any client transport.
public struct TURNClient {
    public enum State: Equatable, Sendable { case idle, allocating, allocated, failed(String) }

    public let server: TransportAddress
    let username: String
    let password: String
    public private(set) var state: State = .idle
    public private(set) var relayedAddress: TransportAddress?
    public private(set) var mappedAddress: TransportAddress?
    private var realm: String?
    private var nonce: [UInt8]?
    private var key: [UInt8]?
    private var lifetime: Duration = .seconds(600)
    private var refreshAt: Instant?
    private var pending: [[UInt8]: (kind: Kind, request: [UInt8], attempts: Int, next: Instant, message: STUNMessage)] = [:]
    private var permissions: [[UInt8]: Instant] = [:]   // peer IP → expiry
    private var channels: [TransportAddress: (number: UInt16, bound: Bool, expiry: Instant)] = [:]
    private var nextChannel: UInt16 = 0x4000
    /// Responses that failed authentication or answered nothing we asked.
    public private(set) var ignoredResponses = 0
    /// Over TCP/TLS the transport retransmits; over UDP we do.
    public var reliableTransport = false
    /// The server's LIFETIME is taken as at least this, so a LIFETIME of 0 or a few seconds
    /// cannot make us refresh in a loop; refreshes come at most every half of it.
    public var minimumLifetime: Duration = .seconds(30)
    /// Refreshes that fail (error or no answer) in a row before the allocation is given up.
    public var maxRefreshFailures = 3
    /// Wait before retrying a failed refresh; doubles each time.
    public var refreshRetryDelay: Duration = .seconds(5)
    /// 401/438 answers to one request that are answered with a fresh signed retry, at most
    /// (a server that keeps asking is refused, not obeyed in a loop).
    public var maxAuthRetries = 3
    /// Peers (permissions and channels) kept at most.
    public var maxPeers = 64
    /// Refreshes that failed in a row (reset by a success).
    public private(set) var refreshFailures = 0
    /// Requests given up because the server kept answering 401/438.
    public private(set) var authRetriesExhausted = 0
    /// Peers refused because ``maxPeers`` were held.
    public private(set) var peersRefused = 0

    enum Kind: Hashable { case allocate, refresh, permission([UInt8]), channelBind(TransportAddress) }
    /// Credential retries so far, per request kind (reset when one succeeds).
    private var authRetries: [Kind: Int] = [:]

    public init(server: TransportAddress, username: String, password: String) {
        self.server = server
        self.username = username
        self.password = password
    }

    /// Sends the first Allocate (unauthenticated, to learn realm and nonce).
    public mutating func start(now: Instant) -> [[UInt8]] {
        state = .allocating
        return [send(.allocate, now: now)]
    }

    mutating func send(_ kind: Kind, now: Instant) -> [UInt8] {
        var m: STUNMessage
        switch kind {
        case .allocate:
            m = STUNMessage(method: .allocate, class: .request)
            m.add(STUNAttributeType.requestedTransport, [17, 0, 0, 0])
        case .refresh:
            m = STUNMessage(method: .refresh, class: .request)
            var l: [UInt8] = []
            l.appendU32(600)
            m.add(STUNAttributeType.lifetime, l)
        case .permission(let ip):
            m = STUNMessage(method: .createPermission, class: .request)
            m.addXORAddress(STUNAttributeType.xorPeerAddress, TransportAddress(ip: ip, port: 0)!)
        case .channelBind(let peer):
            m = STUNMessage(method: .channelBind, class: .request)
            var n: [UInt8] = []
            n.appendU16(channels[peer]!.number)
            n.appendU16(0)
            m.add(STUNAttributeType.channelNumber, n)
            m.addXORAddress(STUNAttributeType.xorPeerAddress, peer)
        }
        let bytes = sign(m)
        pending[m.transactionID] = (kind, bytes, 1, now + .milliseconds(250), m)
        return bytes
    }

    func sign(_ m: STUNMessage) -> [UInt8] {
        guard let realm, let nonce, let key else { return m.serialize() }
        var signed = m
        signed.add(STUNAttributeType.username, Array(username.utf8))
        signed.add(STUNAttributeType.realm, Array(realm.utf8))
        signed.add(STUNAttributeType.nonce, nonce)
        return signed.serialize(integrityKey: key)
    }

    /// When ``poll(now:)`` next has work.
    public var nextDeadline: Instant? {
        var d = refreshAt
        for p in pending.values { d = d.map { min($0, p.next) } ?? p.next }
        for e in permissions.values { let r = e + .seconds(-60); d = d.map { min($0, r) } ?? r }
        for c in channels.values where c.bound { let r = c.expiry + .seconds(-60); d = d.map { min($0, r) } ?? r }
        return d
    }

    /// Retransmissions (UDP), refreshes of the allocation, permissions and channels.
    public mutating func poll(now: Instant) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for (id, var p) in pending where p.next <= now {
            if reliableTransport || p.attempts >= 6 {
                pending[id] = nil
                if p.kind == .allocate && state == .allocating { state = .failed("no answer from TURN server \(server)") }
                if p.kind == .refresh && state == .allocated { refreshFailed("no answer to Refresh", now: now) }
                continue
            }
            p.attempts += 1
            p.next = now + .milliseconds(250) * (1 << min(p.attempts - 1, 4))
            pending[id] = p
            out.append(p.request)
        }
        guard state == .allocated else { return out }
        if let r = refreshAt, r <= now {
            refreshAt = nil
            out.append(send(.refresh, now: now))
        }
        for (ip, expiry) in permissions where expiry - .seconds(60) <= now {
            permissions[ip] = now + .seconds(300)
            out.append(send(.permission(ip), now: now))
        }
        for (peer, c) in channels where c.bound && c.expiry - .seconds(60) <= now {
            channels[peer]!.expiry = now + .seconds(600)
            out.append(send(.channelBind(peer), now: now))
        }
        return out
    }

    /// Allows `peer` to reach us through the relay and binds a channel to it (cheaper
    /// framing than Send indications); returns the requests.
    public mutating func addPeer(_ peer: TransportAddress, now: Instant) -> [[UInt8]] {
        guard state == .allocated else { return [] }
        var out: [[UInt8]] = []
        if permissions[peer.ip] == nil {
            guard permissions.count < maxPeers else { peersRefused += 1; return [] }
            permissions[peer.ip] = now + .seconds(300)
            out.append(send(.permission(peer.ip), now: now))
        }
        if channels[peer] == nil && nextChannel <= 0x4FFF {
            channels[peer] = (nextChannel, false, now + .seconds(600))
            nextChannel += 1
            out.append(send(.channelBind(peer), now: now))
        }
        return out
    }

    /// Wraps a datagram for `peer`: ChannelData once the channel is bound, a Send
    /// indication before. `pad` pads ChannelData to 4 bytes (required over TCP/TLS).
    public func wrap(_ payload: UnsafeRawBufferPointer, to peer: TransportAddress, into out: inout [UInt8], pad: Bool) {
        out.removeAll(keepingCapacity: true)
        if let c = channels[peer], c.bound {
            out.appendU16(c.number)
            out.appendU16(UInt16(payload.count))
            out.append(contentsOf: payload)
            if pad { while out.count % 4 != 0 { out.append(0) } }
            return
        }
        var m = STUNMessage(method: .send, class: .indication)
        m.addXORAddress(STUNAttributeType.xorPeerAddress, peer)
        m.add(STUNAttributeType.data, Array(payload))
        out.append(contentsOf: m.serialize())
    }

    /// True when the bytes are ChannelData (RFC 7983: first byte 64–79).
    public static func isChannelData(_ first: UInt8) -> Bool { first >= 64 && first <= 79 }

    /// Unwraps ChannelData from the server: (peer, payload range in `bytes`).
    public func unwrapChannelData(_ bytes: UnsafeRawBufferPointer) -> (TransportAddress, Range<Int>)? {
        guard bytes.count >= 4 else { return nil }
        let number = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        guard 4 + length <= bytes.count, let peer = channels.first(where: { $0.value.number == number })?.key else { return nil }
        return (peer, 4..<(4 + length))
    }

    /// What a STUN message from the server meant.
    public enum Event: Equatable, Sendable {
        case allocated(relayed: TransportAddress, mapped: TransportAddress?)
        case failed(String)
        /// A Data indication: a datagram from `peer`.
        case data(peer: TransportAddress, payload: [UInt8])
    }

    /// Handles a STUN message from the server; returns what to send and what happened.
    public mutating func handle(_ m: STUNMessage, now: Instant) -> ([[UInt8]], Event?) {
        if m.messageClass == .indication && m.method == STUNMethod.data.rawValue {
            guard let peer = m.xorAddress(STUNAttributeType.xorPeerAddress), let data = m.attribute(STUNAttributeType.data) else { return ([], nil) }
            return ([], .data(peer: peer, payload: data))
        }
        guard let p = pending[m.transactionID] else { ignoredResponses += 1; return ([], nil) }
        // A signed request must get a signed answer (errors 401/438 are unsigned).
        if let key, m.messageClass == .successResponse, !m.verifyIntegrity(key: key) { ignoredResponses += 1; return ([], nil) }
        pending[m.transactionID] = nil
        if m.messageClass == .errorResponse {
            let code = m.errorCode?.code ?? 0
            if (code == 401 && key == nil) || code == 438 {
                guard let r = m.attribute(STUNAttributeType.realm), let n = m.attribute(STUNAttributeType.nonce) else {
                    state = .failed("TURN server \(server) asked for credentials without a realm or nonce")
                    return ([], .failed("TURN server \(server) sent \(code) without realm or nonce"))
                }
                let retries = authRetries[p.kind, default: 0]
                if retries < maxAuthRetries {
                    authRetries[p.kind] = retries + 1
                    realm = String(decoding: r, as: UTF8.self)
                    nonce = n
                    key = longTermKey(username: username, realm: realm!, password: password)
                    return ([send(p.kind, now: now)], nil)
                }
                // The server keeps asking for credentials it was given: treat it as a refusal.
                authRetries[p.kind] = 0
                authRetriesExhausted += 1
            }
            let reason = code == 401 && p.kind == .allocate
                ? "TURN server \(server): wrong credentials for user '\(username)'"
                : "TURN server \(server) refused \(p.kind): \(code) \(m.errorCode?.reason ?? "")"
            if p.kind == .allocate {
                state = .failed(reason)
                return ([], .failed(reason))
            }
            if p.kind == .refresh && state == .allocated {
                refreshFailed(reason, now: now)
                if case .failed(let r) = state { return ([], .failed(r)) }
            }
            return ([], nil)
        }
        authRetries[p.kind] = nil
        switch p.kind {
        case .allocate:
            guard let relayed = m.xorAddress(STUNAttributeType.xorRelayedAddress) else {
                state = .failed("TURN server \(server) allocated no relayed address")
                return ([], .failed("TURN server \(server) allocated no relayed address"))
            }
            relayedAddress = relayed
            mappedAddress = m.xorMappedAddress
            takeLifetime(m)
            refreshAt = now + refreshDelay
            state = .allocated
            return ([], .allocated(relayed: relayed, mapped: mappedAddress))
        case .refresh:
            takeLifetime(m)
            refreshFailures = 0
            refreshAt = now + refreshDelay
        case .permission:
            break
        case .channelBind(let peer):
            channels[peer]?.bound = true
        }
        return ([], nil)
    }

    /// The server's LIFETIME, if it sent one, floored at ``minimumLifetime``.
    mutating func takeLifetime(_ m: STUNMessage) {
        guard let l = m.attribute(STUNAttributeType.lifetime), l.count == 4 else { return }
        lifetime = max(minimumLifetime, .seconds(Int64(l.readU32(at: 0))))
    }

    /// The effective allocation lifetime (the server's, floored).
    public var allocationLifetime: Duration { lifetime }

    /// When to refresh after a success: a minute before the lifetime ends, or halfway
    /// through a short one.
    var refreshDelay: Duration {
        lifetime > .seconds(120) ? lifetime - .seconds(60) : lifetime / 2
    }

    /// A refresh failed: retry later with back-off, up to ``maxRefreshFailures``, then the
    /// allocation is given up.
    mutating func refreshFailed(_ reason: String, now: Instant) {
        refreshFailures += 1
        if refreshFailures >= maxRefreshFailures {
            refreshAt = nil
            state = .failed("TURN server \(server): refresh failed \(refreshFailures) times (last: \(reason))")
            return
        }
        refreshAt = now + refreshRetryDelay * (1 << min(refreshFailures - 1, 6))
    }

    /// The transport to the server broke (TCP/TLS): the allocation is gone.
    public mutating func transportFailed(_ reason: String) {
        if case .failed = state { return }
        state = .failed("TURN server \(server): \(reason)")
    }

    /// Ends the allocation (Refresh with lifetime 0).
    public mutating func release() -> [[UInt8]] {
        guard state == .allocated else { return [] }
        var m = STUNMessage(method: .refresh, class: .request)
        m.add(STUNAttributeType.lifetime, [0, 0, 0, 0])
        state = .idle
        return [sign(m)]
    }
}
