import ICE
import NetworkCore
import STUN

/// Server-reflexive candidates (RFC 8445 §5.1.1.1): a STUN Binding request from each
/// host socket to each configured STUN server; the XOR-MAPPED-ADDRESS in the answer is
/// how the NAT in front of us maps that socket. Runs on the transport thread, no I/O of
/// its own: it returns what to send and what it learned.
struct CandidateGatherer {
    struct Transaction {
        var socket: Int
        var server: TransportAddress
        var request: [UInt8]
        var attempts: Int
        var nextRetransmit: Instant
    }

    private(set) var transactions: [[UInt8]: Transaction] = [:]
    private(set) var unreachable: [TransportAddress] = []
    private var answered: Set<TransportAddress> = []
    /// Candidates found (SDP values), in order.
    private(set) var candidates: [String] = []
    var maxAttempts = 4
    var initialRTO: Duration = .milliseconds(100)

    /// Starts gathering; returns the first requests (socket index, destination, bytes).
    mutating func start(sockets: [TransportAddress], servers: [TransportAddress], now: Instant) -> [(Int, TransportAddress, [UInt8])] {
        var out: [(Int, TransportAddress, [UInt8])] = []
        for (i, base) in sockets.enumerated() where !base.isLoopback {
            for server in servers where server.family == base.family {
                let m = STUNMessage(method: .binding, class: .request)
                let bytes = m.serialize()
                transactions[m.transactionID] = Transaction(socket: i, server: server, request: bytes, attempts: 1, nextRetransmit: now + initialRTO)
                out.append((i, server, bytes))
            }
        }
        return out
    }

    var complete: Bool { transactions.isEmpty }

    /// True when `id` is one of our binding requests (a STUN server that is also our TURN
    /// server answers on the same socket).
    func owns(_ id: [UInt8]) -> Bool { transactions[id] != nil }

    var nextDeadline: Instant? { transactions.values.map(\.nextRetransmit).min() }

    /// Retransmissions due now; servers that never answered are given up on.
    mutating func poll(now: Instant) -> [(Int, TransportAddress, [UInt8])] {
        var out: [(Int, TransportAddress, [UInt8])] = []
        for (id, var t) in transactions where t.nextRetransmit <= now {
            if t.attempts >= maxAttempts {
                transactions[id] = nil
                if !answered.contains(t.server) && !unreachable.contains(t.server) { unreachable.append(t.server) }
                continue
            }
            t.attempts += 1
            t.nextRetransmit = now + initialRTO * (1 << (t.attempts - 1))
            transactions[id] = t
            out.append((t.socket, t.server, t.request))
        }
        return out
    }

    /// Takes a STUN response if it answers one of ours; returns a new candidate (SDP
    /// value) when the mapping differs from the socket's own address. Anything else that
    /// claims to be an answer (wrong source, unknown transaction) is left to the caller.
    mutating func handle(_ m: STUNMessage, from: TransportAddress, base: TransportAddress) -> (matched: Bool, candidate: String?) {
        guard let t = transactions[m.transactionID], from == t.server else { return (false, nil) }
        transactions[m.transactionID] = nil
        answered.insert(t.server)
        guard m.messageClass == .successResponse, let mapped = m.xorMappedAddress else { return (true, nil) }
        if mapped.ip == base.ip { return (true, nil) }  // no NAT in between: the host candidate says it all
        let c = ICECandidate(foundation: String(CRC32.checksum(Array(("srflx" + base.host).utf8)) % 100_000_000),
                             priority: ICECandidate.priority(type: .srflx, localPreference: 65535),
                             host: mapped.host, port: mapped.port, type: .srflx, relatedHost: base.host, relatedPort: base.port)
        let value = c.sdpValue
        if candidates.contains(value) { return (true, nil) }
        candidates.append(value)
        return (true, value)
    }
}
