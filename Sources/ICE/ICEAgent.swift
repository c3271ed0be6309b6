import NetworkCore
import STUN

/// A datagram the agent wants sent: from which local base (socket) to which address.
public struct ICETransmit: Sendable {
    public var localIndex: Int
    public var to: TransportAddress
    public var bytes: [UInt8]
}

/// What happened, for the owner to act on.
public enum ICEEvent: Sendable, Equatable {
    /// A usable pair was chosen or changed: send on `localIndex` to `remote`.
    case selectedPair(localIndex: Int, remote: TransportAddress, localType: ICECandidateType, remoteType: ICECandidateType, nominated: Bool)
    /// The remote side stopped answering consent checks (RFC 7675) or nothing ever connected.
    case failed(reason: String)
    /// A role conflict made us switch roles (RFC 8445 §7.3.1.1).
    case roleChanged(controlling: Bool)
}

/// The ICE connection state, as W3C `RTCIceConnectionState` names it.
public enum ICEState: String, Sendable { case new, checking, connected, failed, closed }

/// A full ICE agent (RFC 8445) for one component (BUNDLE + rtcp-mux) with no I/O.
///
/// The owner feeds it received STUN messages and the time, and drains ``takeTransmits()``
/// and ``takeEvents()``; ``nextDeadline`` says when to call ``poll(now:)`` next.
/// Both roles, role-conflict repair, paced connectivity checks with retransmission,
/// triggered checks, peer-reflexive candidates, regular nomination and consent freshness
/// (RFC 7675). Not thread-safe: owned by one transport loop.
public struct ICEAgent {
    public struct LocalCandidate: Sendable {
        public var candidate: ICECandidate
        /// The socket's bound address.
        public var base: TransportAddress
    }

    enum PairState { case frozen, waiting, inProgress, succeeded, failed }

    struct Pair {
        var localIndex: Int
        var remote: TransportAddress
        var remoteType: ICECandidateType
        var remotePriority: UInt32
        var state: PairState = .waiting
        var nominated = false
        var useCandidateSent = false
        var priority: UInt64 = 0
    }

    struct Transaction {
        var pairIndex: Int
        var request: [UInt8]
        var sentAt: Instant
        var attempts: Int
        var nextRetransmit: Instant
        var useCandidate: Bool
        var isConsent: Bool
    }

    public private(set) var controlling: Bool
    public let tieBreaker: UInt64
    public let localUfrag: String
    public let localPwd: String
    public private(set) var remoteUfrag: String?
    public private(set) var remotePwd: String?
    public private(set) var localCandidates: [LocalCandidate] = []
    public private(set) var remoteCandidates: [ICECandidate] = []
    public private(set) var state: ICEState = .new

    var pairs: [Pair] = []
    var transactions: [[UInt8]: Transaction] = [:]
    var triggered: [Int] = []
    var selected: Int?
    var selectedAnnouncedNominated = false
    var nextCheckAt: Instant?
    var startedAt: Instant?
    var lastConsentResponse: Instant?
    var nextConsentAt: Instant?
    private var transmits: [ICETransmit] = []
    private var events: [ICEEvent] = []

    /// Time between connectivity checks (Ta, RFC 8445 §14.2).
    public var pacing: Duration = .milliseconds(10)
    /// First retransmission timeout of a check; doubles per attempt.
    public var initialRTO: Duration = .milliseconds(100)
    public var maxAttempts = 7
    /// Consent: a check every ~5 s, expiry after 30 s without a response (RFC 7675 §5.1).
    public var consentInterval: Duration = .seconds(5)
    public var consentTimeout: Duration = .seconds(30)
    /// Without any working pair after this long, the agent fails.
    public var connectTimeout: Duration = .seconds(30)
    /// Counts of STUN messages dropped as unauthenticated or malformed.
    public private(set) var rejectedMessages = 0
    /// Signalled remote candidates kept at most; more are ignored (and counted).
    public var maxRemoteCandidates = 50
    /// Peer-reflexive candidates learnt from checks, kept at most on top of the signalled ones.
    public var maxPeerReflexiveCandidates = 10
    /// Remote candidates ignored because the table was full.
    public private(set) var ignoredCandidates = 0

    public init(controlling: Bool, localUfrag: String = randomICEString(8), localPwd: String = randomICEString(24),
                tieBreaker: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        self.controlling = controlling
        self.localUfrag = localUfrag
        self.localPwd = localPwd
        self.tieBreaker = tieBreaker
    }

    public var selectedPair: (localIndex: Int, remote: TransportAddress)? {
        selected.map { (pairs[$0].localIndex, pairs[$0].remote) }
    }

    /// The datagrams to send, once. Polled on every turn of the transport loop, so an
    /// empty queue costs nothing (emptying a shared array would allocate a new one).
    public mutating func takeTransmits() -> [ICETransmit] {
        guard !transmits.isEmpty else { return [] }
        defer { transmits = [] }
        return transmits
    }

    public mutating func takeEvents() -> [ICEEvent] {
        guard !events.isEmpty else { return [] }
        defer { events = [] }
        return events
    }

    /// Adds a host (or other) candidate bound to a local socket; returns its index.
    @discardableResult
    public mutating func addLocalCandidate(_ c: ICECandidate, base: TransportAddress) -> Int {
        localCandidates.append(LocalCandidate(candidate: c, base: base))
        let index = localCandidates.count - 1
        for r in remoteCandidates { if let a = r.address { addPair(localIndex: index, remote: a, type: r.type, priority: r.priority) } }
        return index
    }

    public mutating func setRemoteCredentials(ufrag: String, pwd: String, now: Instant) {
        remoteUfrag = ufrag
        remotePwd = pwd
        start(now)
    }

    /// Adds a remote candidate with a numeric address (mDNS names must be resolved first).
    /// Returns false when the candidate was refused because the table is full.
    @discardableResult
    public mutating func addRemoteCandidate(_ c: ICECandidate, now: Instant) -> Bool {
        guard c.component == 1, c.transport == "udp", let addr = c.address else { return true }
        if let i = remoteCandidates.firstIndex(where: { $0.address == addr }) {
            // Signalled after its checks arrived: the peer-reflexive guess becomes what it is.
            if remoteCandidates[i].type == .prflx && c.type != .prflx {
                remoteCandidates[i] = c
                for p in pairs.indices where pairs[p].remote == addr { pairs[p].remoteType = c.type }
            }
            return true
        }
        guard remoteCandidates.count(where: { $0.type != .prflx }) < maxRemoteCandidates else {
            ignoredCandidates += 1
            return false
        }
        remoteCandidates.append(c)
        for i in localCandidates.indices { addPair(localIndex: i, remote: addr, type: c.type, priority: c.priority) }
        start(now)
        return true
    }

    /// Whether `address` is the remote side of a pair whose connectivity check succeeded
    /// (an ICE-validated address: DTLS and media are accepted only from these).
    public func isValidated(_ address: TransportAddress) -> Bool {
        pairs.contains { $0.remote == address && $0.state == .succeeded }
    }

    /// Whether `address` is in a candidate pair at all (signalled, or the source of an
    /// authenticated check): its check may still be under way.
    public func isKnownRemote(_ address: TransportAddress) -> Bool {
        pairs.contains { $0.remote == address }
    }

    mutating func start(_ now: Instant) {
        if state == .new && remotePwd != nil { state = .checking; startedAt = now }
        if nextCheckAt == nil { nextCheckAt = now }
    }

    @discardableResult
    mutating func addPair(localIndex: Int, remote: TransportAddress, type: ICECandidateType, priority: UInt32, fromCheck: Bool = false) -> Int {
        if let existing = pairs.firstIndex(where: { $0.localIndex == localIndex && $0.remote == remote }) { return existing }
        guard localCandidates[localIndex].base.family == remote.family else { return -1 }
        // From candidates, loopback only pairs with loopback: such a check would mostly be
        // answered from the other interface. A check that arrived has proven its path, so
        // its pair exists whatever the addresses (RFC 8445 §7.3.1.4): the peer may nominate it.
        guard fromCheck || localCandidates[localIndex].base.isLoopback == remote.isLoopback else { return -1 }
        var p = Pair(localIndex: localIndex, remote: remote, remoteType: type, remotePriority: priority)
        p.priority = pairPriority(local: localCandidates[localIndex].candidate.priority, remote: priority)
        pairs.append(p)
        return pairs.count - 1
    }

    func pairPriority(local: UInt32, remote: UInt32) -> UInt64 {
        let g = UInt64(controlling ? local : remote), d = UInt64(controlling ? remote : local)
        return (min(g, d) << 32) + 2 * max(g, d) + (g > d ? 1 : 0)
    }

    /// The earliest time at which ``poll(now:)`` has work.
    public var nextDeadline: Instant? {
        var d = nextCheckAt
        for t in transactions.values { d = d.map { min($0, t.nextRetransmit) } ?? t.nextRetransmit }
        if let c = nextConsentAt { d = d.map { min($0, c) } ?? c }
        return d
    }

    /// Runs timers: paced checks, retransmissions, consent.
    public mutating func poll(now: Instant) {
        guard state != .closed && state != .failed else { return }
        // Retransmit or time out checks in flight.
        for (id, var t) in transactions where t.nextRetransmit <= now {
            // A consent check is a STUN transaction like any other: retransmitted, and its
            // answer taken for ~6 s. (Dropped after one RTO, every answer on a path with a
            // round trip over 100 ms came too late, and consent expired 30 s into the call.)
            if t.attempts >= maxAttempts {
                transactions[id] = nil
                if !t.isConsent && pairs[t.pairIndex].state == .inProgress { pairs[t.pairIndex].state = .failed }
                continue
            }
            t.attempts += 1
            t.nextRetransmit = now + initialRTO * (1 << min(t.attempts - 1, 4))
            transactions[id] = t
            transmits.append(ICETransmit(localIndex: pairs[t.pairIndex].localIndex, to: pairs[t.pairIndex].remote, bytes: t.request))
        }
        // One new check per Ta: triggered first, then the highest-priority waiting pair.
        if let at = nextCheckAt, at <= now, remotePwd != nil {
            var next: Int? = nil
            while let t = triggered.first {
                triggered.removeFirst()
                if pairs[t].state != .inProgress && pairs[t].state != .succeeded || needsNomination(t) { next = t; break }
            }
            if next == nil {
                next = pairs.indices.filter { pairs[$0].state == .waiting }.max { pairs[$0].priority < pairs[$1].priority }
            }
            if let n = next {
                sendCheck(pair: n, useCandidate: needsNomination(n), consent: false, now: now)
                nextCheckAt = now + pacing
            } else {
                nextCheckAt = nil
            }
        }
        // Consent freshness on the selected pair.
        if let s = selected, state == .connected {
            if let last = lastConsentResponse, now - last > consentTimeout {
                state = .failed
                events.append(.failed(reason: "consent expired: no response from \(pairs[s].remote) for \(Int(consentTimeout.seconds)) s"))
                return
            }
            if let c = nextConsentAt, c <= now {
                sendCheck(pair: s, useCandidate: false, consent: true, now: now)
                // Randomised between 0.8 and 1.2 of the interval (RFC 7675 §5.1).
                let jitter = Double.random(in: 0.8...1.2)
                nextConsentAt = now + .nanoseconds(Int64(Double(consentInterval.nanosecondsInt) * jitter))
            }
        } else if state == .checking, let s = startedAt, now - s > connectTimeout {
            state = .failed
            events.append(.failed(reason: "no candidate pair answered within \(Int(connectTimeout.seconds)) s"))
        }
    }

    func needsNomination(_ pair: Int) -> Bool {
        controlling && !pairs.contains(where: \.nominated) && !pairs[pair].useCandidateSent && pairs[pair].state == .succeeded
    }

    mutating func sendCheck(pair index: Int, useCandidate: Bool, consent: Bool, now: Instant) {
        guard let rufrag = remoteUfrag, let rpwd = remotePwd else { return }
        var m = STUNMessage(method: .binding, class: .request)
        m.add(STUNAttributeType.username, Array("\(rufrag):\(localUfrag)".utf8))
        let prflxPriority = ICECandidate.priority(type: .prflx, localPreference: localCandidates[pairs[index].localIndex].candidate.priority >> 8 & 0xFFFF)
        var p: [UInt8] = []
        p.appendU32(prflxPriority)
        m.add(STUNAttributeType.priority, p)
        var tb: [UInt8] = []
        tb.appendU64(tieBreaker)
        m.add(controlling ? STUNAttributeType.iceControlling : STUNAttributeType.iceControlled, tb)
        if useCandidate {
            m.add(STUNAttributeType.useCandidate, [])
            pairs[index].useCandidateSent = true
        }
        let bytes = m.serialize(integrityKey: Array(rpwd.utf8))
        if !consent && pairs[index].state != .succeeded { pairs[index].state = .inProgress }
        transactions[m.transactionID] = Transaction(pairIndex: index, request: bytes, sentAt: now, attempts: 1,
                                                    nextRetransmit: now + initialRTO, useCandidate: useCandidate, isConsent: consent)
        transmits.append(ICETransmit(localIndex: pairs[index].localIndex, to: pairs[index].remote, bytes: bytes))
    }

    /// Handles a STUN message that arrived on local socket `localIndex` from `from`.
    public mutating func handle(_ m: STUNMessage, from: TransportAddress, localIndex: Int, now: Instant) {
        guard state != .closed else { return }
        switch m.messageClass {
        case .request where m.method == STUNMethod.binding.rawValue:
            handleRequest(m, from: from, localIndex: localIndex, now: now)
        case .successResponse, .errorResponse:
            handleResponse(m, from: from, now: now)
        default:
            break
        }
    }

    mutating func handleRequest(_ m: STUNMessage, from: TransportAddress, localIndex: Int, now: Instant) {
        // Authenticate: USERNAME is "ourUfrag:theirUfrag", keyed with our password.
        guard let user = m.username, user.hasPrefix(localUfrag + ":"), m.verifyIntegrity(key: Array(localPwd.utf8)) else {
            rejectedMessages += 1
            var err = STUNMessage(method: .binding, class: .errorResponse, transactionID: m.transactionID)
            err.addErrorCode(401, "Unauthorized")
            transmits.append(ICETransmit(localIndex: localIndex, to: from, bytes: err.serialize()))
            return
        }
        // Role conflict (RFC 8445 §7.3.1.1).
        if controlling, let theirs = m.iceControlling {
            if tieBreaker >= theirs {
                var err = STUNMessage(method: .binding, class: .errorResponse, transactionID: m.transactionID)
                err.addErrorCode(487, "Role Conflict")
                transmits.append(ICETransmit(localIndex: localIndex, to: from, bytes: err.serialize(integrityKey: Array(localPwd.utf8))))
                return
            }
            switchRole()
        } else if !controlling, let theirs = m.iceControlled {
            if tieBreaker >= theirs {
                switchRole()
            } else {
                var err = STUNMessage(method: .binding, class: .errorResponse, transactionID: m.transactionID)
                err.addErrorCode(487, "Role Conflict")
                transmits.append(ICETransmit(localIndex: localIndex, to: from, bytes: err.serialize(integrityKey: Array(localPwd.utf8))))
                return
            }
        }
        var resp = STUNMessage(method: .binding, class: .successResponse, transactionID: m.transactionID)
        resp.addXORAddress(STUNAttributeType.xorMappedAddress, from)
        transmits.append(ICETransmit(localIndex: localIndex, to: from, bytes: resp.serialize(integrityKey: Array(localPwd.utf8))))

        // A source we do not know is a peer-reflexive candidate (RFC 8445 §7.3.1.3).
        if !remoteCandidates.contains(where: { $0.address == from }) {
            guard remoteCandidates.count(where: { $0.type == .prflx }) < maxPeerReflexiveCandidates else {
                // Answered (the peer learns its address), but no new pair: the table is full.
                ignoredCandidates += 1
                return
            }
            let c = ICECandidate(foundation: "prflx\(remoteCandidates.count)", priority: m.priority ?? 0,
                                 host: from.host, port: from.port, type: .prflx)
            remoteCandidates.append(c)
        }
        let type = remoteCandidates.first { $0.address == from }?.type ?? .prflx
        let idx = addPair(localIndex: localIndex, remote: from, type: type, priority: m.priority ?? 0, fromCheck: true)
        guard idx >= 0 else { return }
        if m.useCandidate && !controlling {
            pairs[idx].nominated = true
            if pairs[idx].state == .succeeded { select(idx, now: now) }
        }
        // Triggered check (RFC 8445 §7.3.1.4).
        if pairs[idx].state != .succeeded && pairs[idx].state != .inProgress {
            pairs[idx].state = .waiting
            if !triggered.contains(idx) { triggered.append(idx) }
            if remotePwd != nil {
                start(now)
                if nextCheckAt.map({ $0 > now }) ?? true { nextCheckAt = now }
            }
        }
    }

    mutating func switchRole() {
        controlling.toggle()
        for i in pairs.indices {
            pairs[i].priority = pairPriority(local: localCandidates[pairs[i].localIndex].candidate.priority, remote: pairs[i].remotePriority)
        }
        events.append(.roleChanged(controlling: controlling))
    }

    mutating func handleResponse(_ m: STUNMessage, from: TransportAddress, now: Instant) {
        // An answer to nothing we asked: spoofed, or a late duplicate.
        guard let t = transactions[m.transactionID] else { rejectedMessages += 1; return }
        // A success response must carry a valid MESSAGE-INTEGRITY keyed with the peer's
        // password (RFC 8445 §7.2.5.1); only a 401 error may come unsigned.
        let unsignedAllowed = m.messageClass == .errorResponse && m.errorCode?.code == 401
        guard let rpwd = remotePwd, unsignedAllowed || m.verifyIntegrity(key: Array(rpwd.utf8)) else {
            rejectedMessages += 1
            return
        }
        transactions[m.transactionID] = nil
        let idx = t.pairIndex
        if t.isConsent {
            if m.messageClass == .successResponse { lastConsentResponse = now }
            return
        }
        if m.messageClass == .errorResponse {
            if m.errorCode?.code == 487 {
                switchRole()
                pairs[idx].state = .waiting
                pairs[idx].useCandidateSent = false
                triggered.append(idx)
                nextCheckAt = now
            } else {
                pairs[idx].state = .failed
            }
            return
        }
        // Responses must come from where the request went (RFC 8445 §7.2.5.2.1).
        guard from == pairs[idx].remote else { pairs[idx].state = .failed; return }
        pairs[idx].state = .succeeded
        lastConsentResponse = now
        if t.useCandidate && controlling { pairs[idx].nominated = true }
        if controlling {
            if pairs[idx].nominated { select(idx, now: now) }
            else {
                if selected == nil { select(idx, now: now) }
                if needsNomination(idx) { triggered.insert(idx, at: 0); nextCheckAt = now }
            }
        } else if pairs[idx].nominated || selected == nil {
            select(idx, now: now)
        }
    }

    mutating func select(_ idx: Int, now: Instant) {
        let changed = selected != idx
        let wasNominated = !changed && selectedAnnouncedNominated
        selected = idx
        selectedAnnouncedNominated = pairs[idx].nominated
        if state != .connected {
            state = .connected
            lastConsentResponse = now
            nextConsentAt = now + consentInterval
        }
        if changed || (pairs[idx].nominated && !wasNominated) {
            let p = pairs[idx]
            events.append(.selectedPair(localIndex: p.localIndex, remote: p.remote, localType: localCandidates[p.localIndex].candidate.type,
                                        remoteType: p.remoteType, nominated: p.nominated))
        }
    }

    /// Stops all checks and timers (the call ended).
    public mutating func close() { state = .closed; transactions.removeAll(); nextCheckAt = nil; nextConsentAt = nil }
}
