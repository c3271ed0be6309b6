import NetworkCore

/// What the peer answered to an offer, a fragment or a hang-up, whichever adapter carried
/// it. Statuses are HTTP's (201 answered, 200/204 fragment taken, 409 busy, ...): both
/// adapters speak them, so call control reads one vocabulary.
struct SignalReply: Sendable {
    var status: Int
    var body: String
    /// Where later fragments and the hang-up for this call go (an offer's answer only):
    /// `http://…/call/ID` or `mqtt:FINGERPRINT/ID`.
    var resource: String?
    /// The callee says both called at once and its own call wins.
    var glare = false
}

typealias SignalCompletion = @Sendable (Result<SignalReply, HTTPError>) -> Void

/// The outbound side of signalling as call control sees it (the port); WHIP over HTTP and
/// signed messages through an MQTT broker are its adapters. ``Device`` picks neither: the
/// peer's config (`via`) picks the adapter for an offer, and the resource the answer names
/// picks it for everything after.
final class SignallingRouter: @unchecked Sendable {
    let http = SignallingClient()
    /// Set once the broker connection is configured (``Daemon``).
    private let brokerBox = Locked<BrokerSignalling?>(nil)

    var broker: BrokerSignalling? {
        get { brokerBox.current }
        set { brokerBox.withLock { $0 = newValue } }
    }

    func stop() {
        http.stop()
        broker?.stop()
    }

    /// Whether the adapter that reaches `peer` knows it to be offline (broker presence);
    /// false when it cannot tell.
    func knownOffline(_ peer: PeerConfig) -> Bool {
        peer.via == .broker && broker?.presence(of: peer.name) == .offline
    }

    /// Sends an offer for our call `callID` to `peer`.
    func sendOffer(_ sdp: String, to peer: PeerConfig, ourName: String, callID: String, completion: @escaping SignalCompletion) {
        if peer.via == .broker {
            guard let broker else { completion(.failure(HTTPError("no [broker] configured to reach \(peer.name)"))); return }
            broker.sendOffer(sdp, to: peer, ourName: ourName, callID: callID, completion: completion)
            return
        }
        http.sendOffer(sdp, to: peer.url + "/call", token: peer.token, ourName: ourName) { result in
            completion(result.map { r in
                let loc = r.header("Location")
                return SignalReply(status: r.status, body: r.bodyText, resource: loc.map { $0.hasPrefix("http") ? $0 : peer.url + $0 },
                                   glare: r.header(SignallingServer.glareHeader) != nil)
            })
        }
    }

    /// Sends fragment lines (candidates, ICE credentials) to the peer's call resource.
    func patch(_ lines: [String], to resource: String, token: String, completion: @escaping SignalCompletion) {
        if let target = BrokerSignalling.Target(resource: resource) {
            guard let broker else { completion(.failure(HTTPError("no broker connection"))); return }
            broker.patch(lines, to: target, completion: completion)
            return
        }
        http.patch(lines, to: resource, token: token) { result in
            completion(result.map { SignalReply(status: $0.status, body: $0.bodyText) })
        }
    }

    /// Hangs up at the peer; the answer does not matter.
    func delete(_ resource: String, token: String) {
        if let target = BrokerSignalling.Target(resource: resource) {
            broker?.delete(target)
            return
        }
        http.delete(resource, token: token)
    }
}
