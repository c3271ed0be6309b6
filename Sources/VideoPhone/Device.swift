import Codecs
import DTLS
import Logging
import MediaDevices
import NetworkCore
import PeerConnection
import SDP
#if canImport(Glibc)
import Glibc
#endif

/// Where a call stands, as the LEDs and `videophonectl status` show it.
public enum CallState: String, Sendable {
    case idle, calling, ringing, inCall = "in-call", ending
}

/// Why a call request was refused, with the HTTP status that says so.
public struct CallError: Error, CustomStringConvertible {
    public var status: Int
    public var description: String
    public init(status: Int, _ description: String) { self.status = status; self.description = description }
}

/// The device: owns its identity, answers and places calls, and reports status.
///
/// Call control is serialised by one lock; the media and transport of the current call
/// run on their own threads.
public final class Device: @unchecked Sendable {
    public let config: DeviceConfig
    let logger: Logger
    public let identity: DTLSCertificate
    let dtls: DTLSContext
    let lock = Lock()
    private var call: ActiveCall?
    private var lastCall: CallSummary?
    private var callsTotal: [String: Int] = [:]
    /// Hook for tests and the simulator: builds a camera for a call.
    public var makeCamera: @Sendable (DeviceConfig) -> (any VideoSource)? = { c in
        c.videoSource == "test-pattern" ? TestPatternCamera(width: c.videoWidth, height: c.videoHeight, fps: c.videoFPS) : nil
    }
    public var makeMicrophone: @Sendable (DeviceConfig) -> (any AudioSource)? = { c in c.audioSource == "tone" ? ToneSource() : nil }

    final class ActiveCall: @unchecked Sendable {
        let id: String
        let peerName: String
        let outgoing: Bool
        var state: CallState
        let pc: PeerConnection
        let media: MediaSession
        /// For outgoing calls: the URL to DELETE on hang-up.
        var remoteResource: String?
        var remoteToken: String?
        /// Candidates held back from a trickle answer, sent in the first PATCH response.
        var trickleOut: [String] = []
        /// The negotiated video codec, e.g. `H264 profile-level-id=42e01f`.
        var videoCodec: String?
        let startedWall = wallClockNanoseconds()
        var offerSentAt: Instant?
        init(id: String, peerName: String, outgoing: Bool, state: CallState, pc: PeerConnection, media: MediaSession) {
            self.id = id; self.peerName = peerName; self.outgoing = outgoing; self.state = state; self.pc = pc; self.media = media
        }
    }

    struct CallSummary {
        var id: String
        var peer: String
        var endReason: String
    }

    public init(config: DeviceConfig, identity: DTLSCertificate, logger: Logger) throws {
        self.config = config
        self.identity = identity
        self.logger = logger
        self.dtls = try DTLSContext(certificate: identity)
        let ifaces = (config.networkAddresses?.compactMap { TransportAddress(host: $0, port: 0) } ?? localInterfaceAddresses(includeLoopback: false))
            .filter { $0.family == .ipv4 && !$0.isLoopback }
        if ifaces.isEmpty {
            mdns = nil
        } else {
            do { mdns = try MDNSService(interfaces: ifaces) } catch {
                logger.warning("mDNS unavailable: .local candidates will rely on peer-reflexive discovery", metadata: ["REASON": "\(error)"])
                mdns = nil
            }
        }
    }

    /// Resolves peers' `.local` candidates and answers for ours (nil on loopback-only setups).
    public let mdns: MDNSService?

    var connectionConfiguration: PeerConnectionConfiguration {
        var addrs: [TransportAddress]? = nil
        if let list = config.networkAddresses { addrs = list.compactMap { TransportAddress(host: $0, port: 0) } }
        var c = PeerConnectionConfiguration(dtls: dtls, bindAddresses: addrs, includeLoopback: config.includeLoopback, logger: logger)
        c.mdns = mdns
        c.hideAddressesWithMDNS = config.mdns
        return c
    }

    var videoSettings: H264EncoderSettings {
        H264EncoderSettings(width: config.videoWidth, height: config.videoHeight, fps: config.videoFPS, bitrateKbps: config.videoBitrateKbps)
    }

    func localParameters(_ pc: PeerConnection, withCandidates: Bool = true) -> LocalParameters {
        let ice = pc.localICE
        let ssrc = pc.localSSRCs
        var lp = LocalParameters(iceUfrag: ice.ufrag, icePwd: ice.pwd, fingerprint: identity.fingerprint,
                                 candidates: withCandidates ? ice.candidates : [], endOfCandidates: withCandidates,
                                 audioSSRC: ssrc.audio, videoSSRC: ssrc.video, cname: config.name, streamID: config.name)
        lp.sendVideo = config.videoSource != "none"
        lp.sendAudio = config.audioSource != "none"
        return lp
    }

    public var state: CallState { lock.withLock { call?.state ?? .idle } }

    // MARK: Outgoing

    /// Calls a provisioned peer (the first when `peerName` is nil). Blocks until the peer
    /// answered the offer; media then starts as soon as DTLS completes.
    public func placeCall(to peerName: String? = nil) throws(CallError) {
        guard let peer = peerName.map({ n in config.peers.first { $0.name == n } }) ?? config.peers.first else {
            throw CallError(status: 404, peerName.map { "no peer named '\($0)' in the config" } ?? "no peer provisioned")
        }
        let id = randomHex(8)
        let media = MediaSession(logger: logger, camera: makeCamera(config), microphone: makeMicrophone(config), speaker: CountingAudioSink(),
                                 videoSettings: videoSettings, sendingAllowed: true)
        let created: Result<ActiveCall, CallError> = lock.withLock {
            guard call == nil else { return .failure(CallError(status: 409, "busy: already in a call")) }
            let pc: PeerConnection
            do { pc = try PeerConnection(configuration: connectionConfiguration, controlling: true, handlers: handlers(for: id, media: media)) }
            catch { return .failure(CallError(status: 500, "cannot open transport: \(error)")) }
            let c = ActiveCall(id: id, peerName: peer.name, outgoing: true, state: .calling, pc: pc, media: media)
            call = c
            return .success(c)
        }
        let active: ActiveCall
        switch created {
        case .success(let c): active = c
        case .failure(let e): throw e
        }
        var log = logger
        log[metadataKey: "CALL_ID"] = "\(id)"
        log[metadataKey: "PEER"] = "\(peer.name)"
        startMedia(media, active.pc, callID: id)
        let offer = JSEP.makeOffer(localParameters(active.pc, withCandidates: !config.trickle), sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
        log.info("calling", metadata: ["STATE": "calling", "url": "\(peer.url)"])
        active.offerSentAt = Instant.now()
        let response: HTTPResponse
        do {
            response = try HTTPClient.request(method: "POST", url: peer.url + "/call",
                                              headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer \(peer.token)")],
                                              body: Array(offer.text.utf8))
        } catch {
            end(id: id, reason: "signalling failed: \(error)", notifyPeer: false)
            throw CallError(status: 502, "cannot reach \(peer.name): \(error)")
        }
        guard response.status == 201 else {
            let reason = "\(peer.name) refused the call: \(response.status) \(response.bodyText.prefix(200))"
            end(id: id, reason: reason, notifyPeer: false)
            throw CallError(status: response.status == 409 ? 409 : 502, reason)
        }
        let session: NegotiatedSession
        do {
            let answer = try SessionDescription(parsing: response.bodyText)
            session = try JSEP.acceptAnswer(answer, local: localParameters(active.pc))
        } catch {
            end(id: id, reason: "bad answer from \(peer.name): \(error)", notifyPeer: false)
            throw CallError(status: 502, "bad answer from \(peer.name): \(error)")
        }
        if let loc = response.header("Location") {
            active.remoteResource = loc.hasPrefix("http") ? loc : peer.url + loc
            active.remoteToken = peer.token
        }
        active.pc.setRemote(session)
        lock.withLock {
            active.videoCodec = Device.describe(session)
            if call === active { active.state = .inCall }
        }
        log.info("call answered", metadata: ["STATE": "in-call"])
        if config.trickle, let resource = active.remoteResource {
            trickleCandidates(active.pc, to: resource, token: peer.token, log: log)
        }
    }

    // MARK: Incoming

    /// Handles `POST /call`: checks the token and the offer, answers, starts media.
    public func acceptOffer(_ req: HTTPRequest) -> HTTPResponse {
        guard authorised(req) else {
            logger.warning("refused call: missing or wrong bearer token", metadata: ["from": "\(req.peer)", "REASON": "unauthorised"])
            return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n", headers: [("WWW-Authenticate", "Bearer")])
        }
        guard req.header("content-type")?.lowercased().hasPrefix("application/sdp") == true else {
            return HTTPResponse(status: 415, contentType: "text/plain", text: "expected Content-Type: application/sdp\n")
        }
        let offer: SessionDescription
        do { offer = try SessionDescription(parsing: req.bodyText) } catch {
            logger.notice("refused malformed offer", metadata: ["from": "\(req.peer)", "REASON": "\(error)"])
            return HTTPResponse(status: 400, contentType: "text/plain", text: "malformed SDP offer: \(error)\n")
        }
        let id = randomHex(8)
        let peerName = req.header("x-videophone-name") ?? req.peer
        let media = MediaSession(logger: logger, camera: makeCamera(config), microphone: makeMicrophone(config), speaker: CountingAudioSink(),
                                 videoSettings: videoSettings, sendingAllowed: config.autoAnswer)
        let result: Result<(ActiveCall, SessionDescription, NegotiatedSession), CallError> = lock.withLock {
            guard call == nil else { return .failure(CallError(status: 409, "busy: already in a call")) }
            let pc: PeerConnection
            do { pc = try PeerConnection(configuration: connectionConfiguration, controlling: false, handlers: handlers(for: id, media: media)) }
            catch { return .failure(CallError(status: 500, "cannot open transport: \(error)")) }
            do {
                let peerTrickles = (offer.value("ice-options") ?? offer.media.first?.value("ice-options") ?? "").split(separator: " ").contains("trickle")
                let holdBack = config.trickle && peerTrickles
                let (answer, session) = try JSEP.answer(offer: offer, local: localParameters(pc, withCandidates: !holdBack),
                                                        sessionID: UInt64.random(in: 1...UInt64(Int64.max)))
                let c = ActiveCall(id: id, peerName: peerName, outgoing: false, state: config.autoAnswer ? .inCall : .ringing, pc: pc, media: media)
                if holdBack { c.trickleOut = pc.localICE.candidates.map { "a=candidate:\($0)" } + ["a=end-of-candidates"] }
                c.videoCodec = Device.describe(session)
                call = c
                pc.setRemote(session)
                return .success((c, answer, session))
            } catch {
                pc.close(reason: "offer refused")
                return .failure(CallError(status: 400, "\(error)"))
            }
        }
        switch result {
        case .failure(let e):
            logger.notice("refused call", metadata: ["from": "\(req.peer)", "REASON": "\(e.description)"])
            return HTTPResponse(status: e.status, contentType: "text/plain", text: e.description + "\n")
        case .success(let (active, answer, _)):
            startMedia(media, active.pc, callID: id)
            logger.info(config.autoAnswer ? "incoming call auto-answered" : "incoming call ringing",
                        metadata: ["CALL_ID": "\(id)", "PEER": "\(peerName)", "STATE": "\(active.state.rawValue)"])
            return HTTPResponse(status: 201, contentType: "application/sdp", text: answer.text,
                                headers: [("Location", "/call/\(id)"), ("ETag", "\"\(id)\"")])
        }
    }

    /// Answers a ringing call (button, `videophonectl answer`).
    public func answer() throws(CallError) {
        let media: MediaSession? = lock.withLock {
            guard let c = call, c.state == .ringing else { return nil }
            c.state = .inCall
            return c.media
        }
        guard let media else { throw CallError(status: 409, "no call is ringing") }
        media.allowSending()
        logger.info("call answered", metadata: ["STATE": "in-call"])
    }

    /// Handles `DELETE /call/ID`.
    public func deleteCall(id: String, req: HTTPRequest) -> HTTPResponse {
        guard authorised(req) else { return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n") }
        let exists = lock.withLock { call?.id == id }
        guard exists else { return HTTPResponse(status: 404, contentType: "text/plain", text: "no call \(id)\n") }
        end(id: id, reason: "remote hung up (DELETE)", notifyPeer: true)
        return HTTPResponse(status: 200)
    }

    /// Hangs up the current call, if any.
    public func hangup(reason: String = "local hangup") -> Bool {
        guard let id = lock.withLock({ call?.id }) else { return false }
        end(id: id, reason: reason, notifyPeer: true)
        return true
    }

    /// Sends our candidates to the callee's resource (RFC 8840 over WHIP's PATCH) and adds
    /// any it returns.
    func trickleCandidates(_ pc: PeerConnection, to resource: String, token: String, log: Logger) {
        let lines = pc.localICE.candidates.map { "a=candidate:\($0)" } + ["a=end-of-candidates"]
        _ = startThread(name: "trickle") {
            do {
                let r = try HTTPClient.request(method: "PATCH", url: resource,
                                               headers: [("Content-Type", "application/trickle-ice-sdpfrag"), ("Authorization", "Bearer \(token)")],
                                               body: Array((lines.joined(separator: "\r\n") + "\r\n").utf8))
                guard r.status == 200 || r.status == 204 else {
                    log.warning("trickle PATCH refused", metadata: ["status": "\(r.status)"])
                    return
                }
                for line in r.bodyText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) where line.hasPrefix("a=candidate:") {
                    pc.addRemoteCandidate(String(line.dropFirst(2)))
                }
            } catch {
                log.warning("trickle PATCH failed", metadata: ["REASON": "\(error)"])
            }
        }
    }

    /// Opens encoders and starts capture off the signalling path: the offer or answer
    /// goes out without waiting for x264 to open.
    func startMedia(_ media: MediaSession, _ pc: PeerConnection, callID: String) {
        let logger = self.logger
        _ = startThread(name: "media-start") {
            do { try media.start(peerConnection: pc) } catch {
                logger.error("media start failed; the call goes on without it", metadata: ["CALL_ID": "\(callID)", "REASON": "\(error)"])
            }
        }
    }

    func handlers(for id: String, media: MediaSession) -> PeerConnectionHandlers {
        var h = media.handlers
        h.onClosed = { [weak self] reason in
            // Off the transport thread: ending joins threads.
            _ = startThread(name: "call-end") { self?.end(id: id, reason: reason, notifyPeer: false) }
        }
        return h
    }

    /// Ends call `id`: stops media, tells the peer (RTCP BYE, DTLS close_notify and, for
    /// calls we placed, DELETE on the peer's resource).
    func end(id: String, reason: String, notifyPeer: Bool) {
        let c: ActiveCall? = lock.withLock {
            guard let c = call, c.id == id else { return nil }
            c.state = .ending
            return c
        }
        guard let c else { return }
        c.media.stop()
        c.pc.close(reason: reason)
        if notifyPeer, let url = c.remoteResource {
            let token = c.remoteToken ?? ""
            _ = try? HTTPClient.request(method: "DELETE", url: url, headers: [("Authorization", "Bearer \(token)")], timeout: .seconds(1))
        }
        lock.withLock {
            if call === c { call = nil }
            lastCall = CallSummary(id: c.id, peer: c.peerName, endReason: reason)
            callsTotal[reason.hasPrefix("local") ? "local_hangup" : "ended", default: 0] += 1
        }
        logger.info("call ended", metadata: ["CALL_ID": "\(c.id)", "PEER": "\(c.peerName)", "STATE": "idle", "REASON": "\(reason)"])
    }

    static func describe(_ s: NegotiatedSession) -> String? {
        guard let v = s.video else { return nil }
        return "\(v.codec.name) profile-level-id=\(v.codec.parameter("profile-level-id") ?? "-") pt=\(v.codec.payloadType)"
    }

    func authorised(_ req: HTTPRequest) -> Bool {
        guard !config.signallingToken.isEmpty, let auth = req.header("authorization"), auth.hasPrefix("Bearer ") else { return false }
        return constantTimeEqual(Array(auth.dropFirst(7).utf8), Array(config.signallingToken.utf8))
    }

    // MARK: HTTP routes

    /// Routes a signalling request.
    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        let path = req.path.split(separator: "?").first.map(String.init) ?? req.path
        var r: HTTPResponse
        switch (req.method, path) {
        case ("OPTIONS", _):
            r = HTTPResponse(status: 204, headers: [("Access-Control-Allow-Methods", "POST, PATCH, DELETE, GET, OPTIONS"),
                                                    ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match"),
                                                    ("Access-Control-Max-Age", "600")])
        case ("POST", "/call"):
            r = acceptOffer(req)
        case ("DELETE", _) where path.hasPrefix("/call/"):
            r = deleteCall(id: String(path.dropFirst(6)), req: req)
        case ("PATCH", _) where path.hasPrefix("/call/"):
            r = patchCall(id: String(path.dropFirst(6)), req: req)
        case ("GET", "/"), ("GET", "/index.html"):
            r = HTTPResponse(status: 200, contentType: "text/html; charset=utf-8", text: DevicePage.html,
                             headers: [("Cache-Control", "no-store")])
        case ("GET", "/status"):
            r = HTTPResponse(status: 200, contentType: "application/json", text: statusJSON() + "\n")
        case (_, "/call"), (_, "/status"):
            r = HTTPResponse(status: 405, contentType: "text/plain", text: "method not allowed\n")
        default:
            r = HTTPResponse(status: 404, contentType: "text/plain", text: "not found\n")
        }
        r.headers.append(("Access-Control-Allow-Origin", "*"))
        r.headers.append(("Access-Control-Expose-Headers", "Location, ETag"))
        return r
    }

    /// `PATCH /call/ID` with `application/trickle-ice-sdpfrag` (RFC 8840): remote candidates.
    func patchCall(id: String, req: HTTPRequest) -> HTTPResponse {
        guard authorised(req) else { return HTTPResponse(status: 401, contentType: "text/plain", text: "missing or wrong bearer token\n") }
        guard req.header("content-type")?.lowercased().hasPrefix("application/trickle-ice-sdpfrag") == true else {
            return HTTPResponse(status: 415, contentType: "text/plain", text: "expected application/trickle-ice-sdpfrag\n")
        }
        guard let (pc, ours) = lock.withLock({ () -> (PeerConnection, [String])? in
            guard let c = call, c.id == id else { return nil }
            defer { c.trickleOut = [] }
            return (c.pc, c.trickleOut)
        }) else {
            return HTTPResponse(status: 404, contentType: "text/plain", text: "no call \(id)\n")
        }
        for line in req.bodyText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) where line.hasPrefix("a=candidate:") {
            pc.addRemoteCandidate(String(line.dropFirst(2)))
        }
        // Our own candidates, held back from the answer, travel back in the response.
        if !ours.isEmpty {
            return HTTPResponse(status: 200, contentType: "application/trickle-ice-sdpfrag", text: ours.joined(separator: "\r\n") + "\r\n")
        }
        return HTTPResponse(status: 204)
    }

    // MARK: Status

    /// `GET /status`: call state and W3C-named statistics.
    public func statusJSON() -> String {
        let (c, last) = lock.withLock { (call, lastCall) }
        var j = JSONWriter()
        j.beginObject()
        j.field("device", config.name)
        j.field("state", c?.state.rawValue ?? CallState.idle.rawValue)
        j.field("fingerprint", "sha-256 " + identity.fingerprint)
        if let m = mdns?.counters {
            j.beginObject("mdns")
            j.field("queriesAnswered", m.queriesAnswered)
            j.field("namesResolved", m.namesResolved)
            j.endObject()
        }
        if let last {
            j.beginObject("lastCall")
            j.field("id", last.id); j.field("peer", last.peer); j.field("endReason", last.endReason)
            j.endObject()
        }
        if let c {
            let s = c.pc.stats
            let f = c.media.figures
            j.beginObject("call")
            j.field("id", c.id)
            j.field("peer", c.peerName)
            j.field("direction", c.outgoing ? "outgoing" : "incoming")
            j.field("videoCodec", c.videoCodec)
            j.field("iceState", s.iceState)
            j.field("dtlsState", s.dtlsState)
            j.beginObject("setup")
            let t = s.timeline
            j.field("signalling", t.milliseconds(t.remoteDescription))
            j.field("ice", t.milliseconds(t.iceConnected))
            j.field("dtls", t.milliseconds(t.dtlsConnected))
            j.field("firstMediaSent", t.milliseconds(t.firstMediaSent))
            j.field("firstVideoFrameReceived", t.milliseconds(t.firstVideoFrameReceived))
            j.field("firstAudioReceived", t.milliseconds(t.firstAudioReceived))
            j.endObject()
            j.beginArray("stats")
            for i in s.inbound {
                j.beginObject()
                j.field("type", "inbound-rtp"); j.field("kind", i.kind); j.field("ssrc", i.ssrc)
                j.field("packetsReceived", i.packetsReceived); j.field("packetsLost", i.packetsLost)
                j.field("jitter", i.jitter); j.field("bytesReceived", i.bytesReceived)
                if i.kind == "video" {
                    j.field("framesReceived", i.framesReceived); j.field("framesDropped", i.framesDropped)
                    j.field("keyFramesReceived", i.keyFramesReceived); j.field("framesPerSecond", i.framesPerSecond)
                    j.field("nackCount", i.nackCount); j.field("pliCount", i.pliCount)
                } else {
                    j.field("packetsDecoded", f.audioPacketsDecoded)
                }
                j.field("bitrate", i.bitrate)
                j.endObject()
            }
            for o in s.outbound {
                j.beginObject()
                j.field("type", "outbound-rtp"); j.field("kind", o.kind); j.field("ssrc", o.ssrc)
                j.field("packetsSent", o.packetsSent); j.field("bytesSent", o.bytesSent)
                if o.kind == "video" {
                    j.field("framesEncoded", o.framesEncoded); j.field("keyFramesEncoded", o.keyFramesEncoded)
                    j.field("targetBitrate", Double(config.videoBitrateKbps * 1000))
                    j.field("frameWidth", o.frameWidth); j.field("frameHeight", o.frameHeight)
                    j.field("framesPerSecond", o.framesPerSecond)
                    j.field("retransmittedPacketsSent", o.retransmittedPacketsSent)
                    j.field("nackCount", o.nackCount); j.field("pliCount", o.pliCount); j.field("firCount", o.firCount)
                }
                j.field("bitrate", o.bitrate)
                j.endObject()
            }
            j.beginObject()
            j.field("type", "candidate-pair")
            j.field("state", s.iceState == "connected" ? "succeeded" : s.iceState)
            j.field("nominated", s.candidatePair.nominated)
            j.field("localCandidateType", s.candidatePair.localCandidateType)
            j.field("remoteCandidateType", s.candidatePair.remoteCandidateType)
            j.field("localAddress", s.candidatePair.localAddress)
            j.field("remoteAddress", s.candidatePair.remoteAddress)
            j.field("currentRoundTripTime", s.candidatePair.currentRoundTripTime)
            j.field("availableOutgoingBitrate", s.candidatePair.availableOutgoingBitrate)
            j.endObject()
            j.endArray()
            j.beginObject("media")
            j.field("framesReceived", f.framesReceived)
            j.field("audioPacketsDecoded", f.audioPacketsDecoded)
            j.field("audioSamplesPlayed", f.audioSamplesPlayed)
            j.field("captureToFrameP50Ms", percentile(f.captureToFrameMs, 50))
            j.field("captureToWireP50Ms", percentile(c.pc.captureToWireSamples, 50))
            j.field("encodeP50Ms", percentile(f.encodeMs, 50))
            j.endObject()
            j.field("mdnsResolved", s.mdnsResolved)
            j.field("malformedDatagrams", s.malformedDatagrams)
            j.field("srtpFailures", s.srtpFailures)
            j.endObject()
        }
        j.endObject()
        return j.text
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
