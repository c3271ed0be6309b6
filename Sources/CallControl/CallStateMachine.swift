import NetworkCore

/// Where the call stands, as the LEDs and `videophonectl status` show it.
public enum CallPhase: Equatable, Sendable {
    case idle
    /// We called `peer`; it has not answered (its device may be ringing).
    case calling(peer: String)
    /// `peer` calls us; the connection is set up already, media waits for the answer.
    case ringing(peer: String)
    case inCall(peer: String)
    /// Tearing down; back to idle when the owner reports ``CallEvent/ended``.
    case ending

    public var name: String {
        switch self {
        case .idle: "idle"
        case .calling: "calling"
        case .ringing: "ringing"
        case .inCall: "in-call"
        case .ending: "ending"
        }
    }

    public var peer: String? {
        switch self {
        case .calling(let p), .ringing(let p), .inCall(let p): p
        case .idle, .ending: nil
        }
    }
}

/// The LED patterns of PRODUCT.md.
public enum LEDPattern: String, Equatable, Sendable {
    case off, slowBlink = "slow-blink", fastBlink = "fast-blink", steady
    /// Error patterns: not provisioned, no network, camera missing.
    case errorNotProvisioned = "error-not-provisioned", errorNoNetwork = "error-no-network", errorCameraMissing = "error-camera-missing"
    /// The button, microphone or speaker cannot be used (the journal says which and why).
    case errorDevice = "error-device"
    /// The button was pressed but the peer is offline (its broker presence), for 3 s.
    case errorPeerOffline = "error-peer-offline"

    /// On/off durations in ms; a steady or dark LED has one state.
    public var timing: [Int] {
        switch self {
        case .off: [0]
        case .steady: [1]
        case .slowBlink: [500, 500]
        case .fastBlink: [120, 120]
        case .errorNotProvisioned: [120, 120, 120, 1000]          // two flashes
        case .errorNoNetwork: [120, 120, 120, 120, 120, 1000]     // three flashes
        case .errorCameraMissing: [1000, 120, 120, 1000]          // long, short
        case .errorDevice: [1000, 120, 120, 120, 120, 1000]       // long, short, short
        case .errorPeerOffline: [1000, 1000]                      // long, long
        }
    }
}

/// What happened, as the state machine hears it.
public enum CallEvent: Equatable, Sendable {
    /// The button: short (< 1.5 s) or long press.
    case shortPress
    case longPress
    /// `videophonectl call [PEER]` (nil: the first provisioned peer).
    case dial(peer: String?)
    case answerRequested
    case hangupRequested
    /// An offer arrived from `peer`; `glareWins` says whether, if we are calling that
    /// peer ourselves at this moment, our call is the one that survives (both sides
    /// decide the same way, by comparing certificate fingerprints).
    case incoming(peer: String, glareWins: Bool)
    /// The far end sends media: the callee answered.
    case mediaFlowing
    /// Our call was refused because the peer called us at the same moment and its call
    /// wins glare; its offer is on its way (or already ringing here).
    case glareLost
    /// The far end hung up, refused, or the connection failed.
    case remoteEnded(reason: EndReason)
    /// Teardown finished.
    case ended
    /// Time passes (ring and answer timeouts).
    case tick
}

/// What the owner should do. The machine itself does no I/O.
public enum CallAction: Equatable, Sendable {
    case placeCall(peer: String)
    /// Accept the offer (answer it; media waits for ``answer`` unless auto-answering).
    case acceptIncoming(peer: String)
    /// Let media flow on a ringing call.
    case answer
    /// Refuse an incoming offer.
    case refuseIncoming(Refusal)
    /// End the current call and tell the peer.
    case hangup(reason: EndReason)
    /// Drop our outgoing call without a word to the peer: the peer's call to us won glare.
    case abandonOutgoing
    case setLED(LEDPattern)
    /// Nothing to do, and why (e.g. a press with no peer provisioned).
    case ignored(Refusal)
}

/// The device's call state machine: button presses, control commands, signalling and
/// media events in; actions out. Takes the time with every event, so tests drive it on a
/// clock of their own.
public struct CallStateMachine: Sendable {
    public private(set) var phase: CallPhase = .idle
    public var peers: [String]
    public var autoAnswer: Bool
    /// How long an incoming call rings before it is refused as unanswered.
    public var ringTimeout: Duration
    /// How long an outgoing call waits for the callee to answer.
    public var answerTimeout: Duration
    /// Why the device cannot work right now (shown as an error pattern when idle).
    public var fault: LEDPattern?
    private var phaseSince: Instant
    /// The peer whose simultaneous call beat ours, and when: its offer is taken at once.
    private var glareWinner: (peer: String, at: Instant)?

    public init(peers: [String], autoAnswer: Bool, ringTimeout: Duration = .seconds(30), answerTimeout: Duration = .seconds(45), now: Instant) {
        self.peers = peers
        self.autoAnswer = autoAnswer
        self.ringTimeout = ringTimeout
        self.answerTimeout = answerTimeout
        self.phaseSince = now
    }

    /// The LED pattern for the current phase.
    public var led: LEDPattern {
        switch phase {
        case .idle, .ending: fault ?? (peers.isEmpty ? .errorNotProvisioned : .off)
        case .calling: .slowBlink
        case .ringing: .fastBlink
        case .inCall: .steady
        }
    }

    mutating func enter(_ p: CallPhase, _ now: Instant, _ actions: inout [CallAction]) {
        let before = led
        phase = p
        phaseSince = now
        if led != before { actions.append(.setLED(led)) }
    }

    /// Feeds one event; returns what to do, in order.
    public mutating func handle(_ event: CallEvent, now: Instant) -> [CallAction] {
        var out: [CallAction] = []
        switch (phase, event) {
        // Placing a call.
        case (.idle, .shortPress):
            guard let first = peers.first else { return [.ignored(.noPeerProvisioned)] }
            out.append(.placeCall(peer: first))
            enter(.calling(peer: first), now, &out)
        case (.idle, .dial(let peer)):
            guard let p = peer ?? peers.first else { return [.ignored(.noPeerProvisioned)] }
            guard peers.contains(p) else { return [.ignored(.unknownPeer(p))] }
            out.append(.placeCall(peer: p))
            enter(.calling(peer: p), now, &out)
        case (.idle, .longPress):
            return [.ignored(.nothingToRejectOrCancel)]

        // Incoming.
        case (.idle, .incoming(let peer, _)):
            out.append(.acceptIncoming(peer: peer))
            let wantedThisPeer = glareWinner.map { $0.peer == peer && now - $0.at < .seconds(10) } ?? false
            glareWinner = nil
            if autoAnswer || wantedThisPeer {
                out.append(.answer)
                enter(.inCall(peer: peer), now, &out)
            } else {
                enter(.ringing(peer: peer), now, &out)
            }
        case (.calling(let callee), .incoming(let peer, let glareWins)) where callee == peer:
            // Glare: both called each other. The same rule on both sides keeps one call.
            if glareWins {
                return [.refuseIncoming(.glareOursWins)]
            }
            out.append(.abandonOutgoing)
            out.append(.acceptIncoming(peer: peer))
            out.append(.answer)
            enter(.inCall(peer: peer), now, &out)
        case (_, .incoming):
            return [.refuseIncoming(.busy(phase: phase.name))]

        // Outgoing progress.
        case (.calling(let peer), .mediaFlowing):
            enter(.inCall(peer: peer), now, &out)
        case (.calling(let peer), .glareLost):
            // The peer's call to us wins; when its offer arrives it is answered at once.
            glareWinner = (peer, now)
            enter(.idle, now, &out)
        case (.ringing(let peer), .glareLost):
            // Its offer already rang here before our refusal came back: answer it.
            glareWinner = nil
            _ = peer
            out.append(.answer)
            enter(.inCall(peer: phase.peer ?? ""), now, &out)
        case (.calling, .shortPress), (.calling, .longPress), (.calling, .hangupRequested):
            out.append(.hangup(reason: .cancelled))
            enter(.ending, now, &out)

        // Answering.
        case (.ringing(let peer), .shortPress), (.ringing(let peer), .answerRequested):
            out.append(.answer)
            enter(.inCall(peer: peer), now, &out)
        case (.ringing, .longPress), (.ringing, .hangupRequested):
            out.append(.hangup(reason: .rejected))
            enter(.ending, now, &out)

        // In a call.
        case (.inCall, .shortPress), (.inCall, .longPress), (.inCall, .hangupRequested):
            out.append(.hangup(reason: .localHangup))
            enter(.ending, now, &out)

        // From anywhere.
        case (.calling, .remoteEnded), (.ringing, .remoteEnded), (.inCall, .remoteEnded):
            enter(.ending, now, &out)
        case (.ending, .ended), (.calling, .ended), (.ringing, .ended), (.inCall, .ended):
            enter(.idle, now, &out)

        // Timeouts.
        case (.ringing, .tick) where now - phaseSince >= ringTimeout:
            out.append(.hangup(reason: .missed(afterSeconds: Int(ringTimeout.seconds))))
            enter(.ending, now, &out)
        case (.calling, .tick) where now - phaseSince >= answerTimeout:
            out.append(.hangup(reason: .noAnswer(afterSeconds: Int(answerTimeout.seconds))))
            enter(.ending, now, &out)

        case (_, .tick):
            return []
        case (.idle, .answerRequested):
            return [.ignored(.noCallRinging)]
        case (.idle, .hangupRequested):
            return [.ignored(.noCallToHangUp)]
        default:
            return [.ignored(.notNow(event: "\(event)", phase: phase.name))]
        }
        return out
    }

    /// Sets or clears a device fault (camera missing, no network); returns the LED change.
    public mutating func setFault(_ f: LEDPattern?) -> [CallAction] {
        let before = led
        fault = f
        return led != before ? [.setLED(led)] : []
    }

    /// How long the current phase has lasted.
    public func elapsed(now: Instant) -> Duration { now - phaseSince }
}

/// Glare resolution: the side whose certificate fingerprint sorts higher keeps its call.
public func winsGlare(ourFingerprint: [UInt8], theirFingerprint: [UInt8]) -> Bool {
    ourFingerprint.lexicographicallyPrecedes(theirFingerprint) == false && ourFingerprint != theirFingerprint
}
