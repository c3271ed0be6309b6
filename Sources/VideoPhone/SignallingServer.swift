import CallControl
import ICE
import Logging
import NetworkCore
import SDP

/// The device's HTTP edge (WHIP-shaped, RFC 9725): routes requests, checks bearer tokens
/// and pinned certificates, parses offers and trickle fragments, and turns typed results
/// into status codes and words. Runs on the server loop; call state is only touched on
/// call control, where each request hops.
final class SignallingServer: @unchecked Sendable {
    let device: Device
    var logger: Logger { device.logger }

    /// Marks a 409 that means "glare: my call wins" (so no text is parsed as protocol).
    static let glareHeader = "X-Videophone-Glare"
    /// The most candidates one offer or PATCH may carry; more is refused.
    static let maxCandidatesPerMessage = 40

    init(device: Device) { self.device = device }

    static func text(_ status: Int, _ words: String, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain", text: words + "\n", headers: headers)
    }

    /// Routes one request; answers through `responder`, now or from call control.
    func handle(_ req: HTTPRequest, _ responder: HTTPResponder) {
        let path = req.path.split(separator: "?").first.map(String.init) ?? req.path
        let respond: @Sendable (HTTPResponse) -> Void = { r in
            var r = r
            r.headers.append(("Access-Control-Allow-Origin", "*"))
            r.headers.append(("Access-Control-Expose-Headers", "Location, ETag"))
            responder.respond(r)
        }
        // Bounded work per source, GETs included: a flood is refused before any parsing.
        guard device.rateLimiter.allow(source: req.peer, cost: req.method == "GET" ? 0.1 : 1) else {
            respond(Self.text(429, "too many requests", headers: [("Retry-After", "1")]))
            return
        }
        switch (req.method, path) {
        case ("OPTIONS", _):
            respond(HTTPResponse(status: 204, headers: [("Access-Control-Allow-Methods", "POST, PATCH, DELETE, GET, OPTIONS"),
                                                        ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match"),
                                                        ("Access-Control-Max-Age", "600")]))
        case ("POST", "/call"):
            acceptOffer(req, respond)
        case ("DELETE", _) where path.hasPrefix("/call/"):
            deleteCall(id: String(path.dropFirst(6)), req, respond)
        case ("PATCH", _) where path.hasPrefix("/call/"):
            patchCall(id: String(path.dropFirst(6)), req, respond)
        case ("GET", "/"), ("GET", "/index.html"):
            respond(HTTPResponse(status: 200, contentType: "text/html; charset=utf-8", text: DevicePage.html, headers: [("Cache-Control", "no-store")]))
        case ("GET", "/metrics") where device.config.metricsListen == nil:
            respond(HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4", text: device.metrics.render()))
        case ("GET", "/status"):
            // Without a token: the device's state only, no call id, address or candidate.
            let full = authorise(req) != nil
            respond(HTTPResponse(status: 200, contentType: "application/json", text: device.statusJSON(full: full) + "\n"))
        case (_, "/call"), (_, "/status"):
            respond(Self.text(405, "method not allowed"))
        default:
            respond(Self.text(404, "not found"))
        }
    }

    // MARK: Authorisation

    /// Which provisioned peer (or guest) presented this request's bearer token. Every
    /// token is compared in constant time, and all of them always are.
    func authorise(_ req: HTTPRequest) -> Caller? {
        guard let auth = req.header("authorization"), auth.hasPrefix("Bearer ") else { return nil }
        let presented = Array(auth.dropFirst(7).utf8)
        let config = device.config
        var found: Caller? = nil
        for p in config.peers where !p.acceptToken.isEmpty {
            if constantTimeEqual(presented, Array(p.acceptToken.utf8)) && found == nil { found = .peer(name: p.name) }
        }
        if !config.signallingToken.isEmpty && constantTimeEqual(presented, Array(config.signallingToken.utf8)) && found == nil { found = .guest }
        return found
    }

    private func unauthorised(_ req: HTTPRequest, _ what: String) -> HTTPResponse {
        device.metrics.callOutcome(.unauthorised)
        if device.rateLimiter.shouldLog(source: req.peer) {
            logger.warning("refused \(what): missing or wrong bearer token", metadata: ["from": "\(req.peer)", "REASON": "unauthorised"])
        }
        return Self.text(401, "missing or wrong bearer token", headers: [("WWW-Authenticate", "Bearer")])
    }

    private func logRefusal(_ source: String, _ message: Logger.Message, peer: String? = nil, _ reason: String) {
        guard device.rateLimiter.shouldLog(source: source) else { return }
        var metadata: Logger.Metadata = ["from": "\(source)", "REASON": "\(reason)"]
        if let peer { metadata["PEER"] = "\(peer)" }
        logger.notice(message, metadata: metadata)
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

    // MARK: POST /call

    /// Checks the token and the offer, then lets call control answer it.
    func acceptOffer(_ req: HTTPRequest, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let caller = authorise(req) else { respond(unauthorised(req, "call")); return }
        guard req.header("content-type")?.lowercased().hasPrefix("application/sdp") == true else {
            respond(Self.text(415, "expected Content-Type: application/sdp"))
            return
        }
        takeOffer(text: req.bodyText, caller: caller, claimedName: req.header("x-videophone-name"), source: req.peer, backChannel: nil, respond)
    }

    /// An offer from an authenticated `caller`, whichever adapter carried it (a bearer
    /// token over HTTP, a verified signature through the broker): checks the SDP and the
    /// pinned fingerprint, then lets call control answer it. `backChannel` is the caller's
    /// own call resource, when its adapter has one (the broker): hang-ups and ICE restarts
    /// from our side go there.
    func takeOffer(text: String, caller: Caller, claimedName: String?, source: String, backChannel: String?,
                   _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let offer: SessionDescription
        do { offer = try SessionDescription(parsing: text) } catch {
            logRefusal(source, "refused malformed offer", "\(error)")
            respond(Self.text(400, "malformed SDP offer: \(error)"))
            return
        }
        let candidates = offer.media.reduce(0) { $0 + $1.attributes.filter { $0.name == "candidate" }.count }
        guard candidates <= Self.maxCandidatesPerMessage else {
            logRefusal(source, "refused offer", "\(candidates) candidates (at most \(Self.maxCandidatesPerMessage))")
            respond(Self.text(400, "offer carries \(candidates) candidates; at most \(Self.maxCandidatesPerMessage) are taken"))
            return
        }
        let theirDigest = Self.offerFingerprint(offer)
        let config = device.config
        let peerName: String
        switch caller {
        case .peer(let name):
            peerName = name
            if let p = config.peers.first(where: { $0.name == name }), let pinned = p.fingerprint {
                guard let fp = theirDigest, Self.sameFingerprint(pinned, fp) else {
                    let got = theirDigest.map { "\($0.algorithm) \(Hex.encode($0.digest, separator: ":", uppercase: true))" } ?? "none"
                    logger.error("refused call: certificate fingerprint does not match the pinned one",
                                 metadata: ["PEER": "\(name)", "from": "\(source)", "REASON": "offer fingerprint \(got), pinned \(pinned)"])
                    device.metrics.callOutcome(.refused)
                    respond(Self.text(403, "certificate fingerprint does not match the one provisioned for \(name)"))
                    return
                }
            }
        case .guest:
            // A guest may not pass for a provisioned peer: a claimed peer name counts only
            // with that peer's pinned certificate. Otherwise it stays a guest.
            let claimed = claimedName
            if let claimed, let p = config.peers.first(where: { $0.name == claimed }), let pinned = p.fingerprint,
               let fp = theirDigest, Self.sameFingerprint(pinned, fp) {
                peerName = p.name
            } else {
                if let claimed, config.peers.contains(where: { $0.name == claimed }) {
                    logRefusal(source, "guest token used with a provisioned peer's name; treated as a guest", peer: claimed,
                               "that peer has no pinned certificate matching the offer (give it an accept_token)")
                }
                peerName = "guest@\(source)"
            }
        }
        let glareWins = theirDigest.map { winsGlare(ourFingerprint: self.device.identity.sha256, theirFingerprint: $0.digest) } ?? true
        let peerTrickles = (offer.value("ice-options") ?? offer.media.first?.value("ice-options") ?? "").split(separator: " ").contains("trickle")
        let device = self.device
        let queued = device.onControl {
            let result = device.incoming(offer: offer, peerName: peerName, caller: caller, glareWins: glareWins,
                                         holdBackCandidates: peerTrickles, source: source, backChannel: backChannel)
            switch result {
            case .success(let (answer, id)):
                respond(HTTPResponse(status: 201, contentType: "application/sdp", text: answer,
                                     headers: [("Location", "/call/\(id)"), ("ETag", "\"\(id)\"")]))
            case .failure(let failure):
                let (status, outcome, extra) = Self.map(failure)
                device.metrics.callOutcome(outcome)
                self.logRefusal(source, "refused call", peer: peerName, failure.description)
                respond(Self.text(status, failure.description, headers: extra))
            }
        }
        if !queued { respond(Self.text(503, CallFailure.overloaded.description, headers: [("Retry-After", "1")])) }
    }

    /// The HTTP status, metrics outcome and extra headers for a failed incoming call.
    static func map(_ f: CallFailure) -> (Int, CallOutcome, [(String, String)]) {
        switch f {
        case .refused(.glareOursWins): (409, .busy, [(glareHeader, "ours")])
        case .refused(.busy): (409, .busy, [])
        case .refused(.unknownPeer), .refused(.noPeerProvisioned): (404, .refused, [])
        case .refused: (409, .refused, [])
        case .badOffer: (400, .refused, [])
        case .noTransport: (500, .failed, [])
        case .ended: (409, .failed, [])
        case .overloaded: (503, .failed, [("Retry-After", "1")])
        }
    }

    // MARK: DELETE and PATCH /call/ID

    /// `DELETE /call/ID`, by the party that created the call.
    func deleteCall(id: String, _ req: HTTPRequest, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let caller = authorise(req) else { respond(unauthorised(req, "hang-up")); return }
        takeHangup(id: id, caller: caller, eitherDirection: false, respond)
    }

    /// A hang-up of call `id` from `caller`. Over HTTP only the party that created the
    /// call may end it; through the broker (`eitherDirection`) the pinned peer of a call we
    /// placed may too.
    func takeHangup(id: String, caller: Caller, eitherDirection: Bool, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let device = self.device
        let queued = device.onControl {
            guard device.call(id: id, of: caller, eitherDirection: eitherDirection) != nil else {
                respond(Self.text(404, "no call \(id.prefix(64)) of yours"))
                return
            }
            device.remoteHungUp(id: id)
            respond(HTTPResponse(status: 200))
        }
        if !queued { respond(Self.text(503, CallFailure.overloaded.description, headers: [("Retry-After", "1")])) }
    }

    /// `PATCH /call/ID` with `application/trickle-ice-sdpfrag` (RFC 8840): remote
    /// candidates, or new credentials for an ICE restart, by the party that created the call.
    func patchCall(id: String, _ req: HTTPRequest, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let caller = authorise(req) else { respond(unauthorised(req, "trickle")); return }
        guard req.header("content-type")?.lowercased().hasPrefix("application/trickle-ice-sdpfrag") == true else {
            respond(Self.text(415, "expected application/trickle-ice-sdpfrag"))
            return
        }
        takeFragment(id: id, caller: caller, text: req.bodyText, source: req.peer, eitherDirection: false, respond)
    }

    /// A trickle or ICE-restart fragment for call `id` from `caller` (see ``takeHangup``
    /// for `eitherDirection`: through the broker the callee may restart ICE too).
    func takeFragment(id: String, caller: Caller, text: String, source: String, eitherDirection: Bool,
                      _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let fragment: TrickleFragment
        switch TrickleFragment.parse(text, maxCandidates: Self.maxCandidatesPerMessage) {
        case .failure(let why):
            logRefusal(source, "refused trickle fragment", why.description)
            respond(Self.text(400, "malformed trickle fragment: \(why)"))
            return
        case .success(let f):
            fragment = f
        }
        let device = self.device
        let queued = device.onControl {
            guard let c = device.call(id: id, of: caller, eitherDirection: eitherDirection) else {
                respond(Self.text(404, "no call \(id.prefix(64)) of yours"))
                return
            }
            let (lines, complete) = device.applyFragment(c, ufrag: fragment.ufrag, pwd: fragment.pwd, candidates: fragment.candidates)
            if !lines.isEmpty || complete {
                let all = lines + (complete ? ["a=end-of-candidates"] : [])
                respond(HTTPResponse(status: 200, contentType: "application/trickle-ice-sdpfrag", text: all.joined(separator: "\r\n") + "\r\n"))
            } else {
                respond(HTTPResponse(status: 204))
            }
        }
        if !queued { respond(Self.text(503, CallFailure.overloaded.description, headers: [("Retry-After", "1")])) }
    }
}

/// A trickle-ICE SDP fragment (RFC 8840) as a PATCH carries it: candidates, and for an
/// ICE restart new credentials. No I/O; the fuzzer drives it.
public struct TrickleFragment: Equatable, Sendable {
    public var ufrag: String?
    public var pwd: String?
    /// Candidate attribute values (without `a=`).
    public var candidates: [String] = []
    public var endOfCandidates = false

    public struct Problem: Error, Equatable, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Reads a fragment; more than `maxCandidates` candidates, a credential without its
    /// pair, or credentials outside RFC 8839's lengths are refused.
    public static func parse(_ text: String, maxCandidates: Int) -> Result<TrickleFragment, Problem> {
        var f = TrickleFragment()
        for line in fragmentLines(text) {
            // Every line is an SDP line (RFC 8840 fragments carry a=, m= and the like).
            guard line.utf8.count >= 2, line.utf8.dropFirst().first == UInt8(ascii: "="), line.first?.isLetter == true else {
                return .failure(Problem(description: "'\(line.prefix(40))' is not an SDP line"))
            }
            if line.hasPrefix("a=candidate:") {
                guard f.candidates.count < maxCandidates else {
                    return .failure(Problem(description: "more than \(maxCandidates) candidates"))
                }
                guard line.utf8.count <= 512 else { return .failure(Problem(description: "candidate line longer than 512 bytes")) }
                guard let c = ICECandidate(sdp: String(line.dropFirst(2))) else {
                    return .failure(Problem(description: "malformed candidate '\(line.prefix(80))'"))
                }
                if let why = c.problem { return .failure(Problem(description: "candidate '\(line.prefix(80))': \(why)")) }
                f.candidates.append(String(line.dropFirst(2)))
            } else if line.hasPrefix("a=ice-ufrag:") {
                f.ufrag = String(line.dropFirst("a=ice-ufrag:".count))
            } else if line.hasPrefix("a=ice-pwd:") {
                f.pwd = String(line.dropFirst("a=ice-pwd:".count))
            } else if line.hasPrefix("a=end-of-candidates") {
                f.endOfCandidates = true
            }
        }
        if (f.ufrag == nil) != (f.pwd == nil) { return .failure(Problem(description: "ice-ufrag and ice-pwd must come together")) }
        if let u = f.ufrag, !isICEChars(u, 4...256) { return .failure(Problem(description: "ice-ufrag must be 4 to 256 of A-Z a-z 0-9 + / (\(u.utf8.count) bytes)")) }
        if let p = f.pwd, !isICEChars(p, 22...256) { return .failure(Problem(description: "ice-pwd must be 22 to 256 of A-Z a-z 0-9 + / (\(p.utf8.count) bytes)")) }
        return .success(f)
    }
}

