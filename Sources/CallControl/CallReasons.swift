/// Why the device would not do what it was asked. Typed so that callers decide on codes and
/// words at their own edge (HTTP status, control-socket reply, log line); no English text is
/// parsed as protocol.
public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
    case noPeerProvisioned
    case unknownPeer(String)
    /// Already in a call (or setting one up); `phase` is where the device stands.
    case busy(phase: String)
    /// Both devices called each other at once and our call is the one kept.
    case glareOursWins
    case noCallRinging
    case noCallToHangUp
    case nothingToRejectOrCancel
    /// An event that means nothing in this phase.
    case notNow(event: String, phase: String)

    public var description: String {
        switch self {
        case .noPeerProvisioned: "no peer provisioned"
        case .unknownPeer(let p): "no peer named '\(p)'"
        case .busy(let phase): "busy: already in a call (\(phase))"
        case .glareOursWins: "glare: both devices called at once; keeping ours"
        case .noCallRinging: "no call is ringing"
        case .noCallToHangUp: "no call to hang up"
        case .nothingToRejectOrCancel: "nothing to reject or cancel"
        case .notNow(let event, let phase): "\(event) while \(phase)"
        }
    }
}

/// How a call ended. The outcome (for metrics) and the words (for logs and status) both
/// come from the case, never from parsing text.
public enum EndReason: Equatable, Sendable, CustomStringConvertible {
    case localHangup
    /// We gave up calling before the callee answered.
    case cancelled
    /// We declined a ringing call.
    case rejected
    case missed(afterSeconds: Int)
    case noAnswer(afterSeconds: Int)
    /// The far end hung up (DELETE, RTCP BYE, DTLS close).
    case remoteHangup(String)
    /// The callee refused our offer (HTTP status, its words).
    case refused(status: Int, detail: String)
    case busy
    /// Signalling to the peer failed (unreachable, timed out, malformed answer).
    case signallingFailed(String)
    /// The peer's certificate is not the one provisioned.
    case fingerprintMismatch(String)
    /// The connection failed or ended (ICE, DTLS, consent), in the transport's words.
    case connectionClosed(String)
    case noTransport(String)
    case peerRemovedFromConfig
    case daemonStopping

    /// The outcome label for `videophone_calls_total{outcome}`.
    public var outcome: CallOutcome {
        switch self {
        case .localHangup, .remoteHangup, .daemonStopping: .completed
        case .cancelled, .noAnswer: .cancelled
        case .rejected: .rejected
        case .missed: .missed
        case .refused, .fingerprintMismatch: .refused
        case .busy: .busy
        case .signallingFailed, .connectionClosed, .noTransport, .peerRemovedFromConfig: .failed
        }
    }

    public var description: String {
        switch self {
        case .localHangup: "local hangup"
        case .cancelled: "cancelled"
        case .rejected: "rejected"
        case .missed(let s): "missed: not answered within \(s) s"
        case .noAnswer(let s): "no answer within \(s) s"
        case .remoteHangup(let how): "remote hung up (\(how))"
        case .refused(let status, let detail): "refused by the peer: \(status) \(detail)"
        case .busy: "the peer is busy"
        case .signallingFailed(let why): "signalling failed: \(why)"
        case .fingerprintMismatch(let why): "certificate fingerprint mismatch: \(why)"
        case .connectionClosed(let why): why
        case .noTransport(let why): "no transport: \(why)"
        case .peerRemovedFromConfig: "peer vanished from the config"
        case .daemonStopping: "daemon stopping"
        }
    }
}

/// Outcomes counted by `videophone_calls_total`; every one exists from start-up.
public enum CallOutcome: String, CaseIterable, Sendable {
    case completed, missed, rejected, cancelled, failed, busy, refused, unauthorised
}
