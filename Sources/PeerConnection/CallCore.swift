import DTLS
import ICE
import Logging
import NetworkCore
import RTP
import SDP
import SRTP
import STUN

/// What a connection's state machine shows other threads: setup stages, counters and the
/// figures for status and metrics. The core writes it; anyone may read a copy.
struct CallStatus {
    var timeline: SetupTimeline
    var iceState = "new"
    var dtlsState = "new"
    var inboundVideo: InboundRTPStats?
    var freezes = FreezeCounter()
    var endToEnd = DelayWindow()
    var inboundAudio: InboundRTPStats?
    var videoFPS = RateMeter()
    var videoBitrate = RateMeter()
    var audioBitrate = RateMeter()
    var pair = CandidatePairStats()
    var malformed: UInt64 = 0
    var srtpFailures: UInt64 = 0
    var closeReason: String?
    var mdnsResolved = 0
    /// Server-reflexive and relayed candidates found, as `a=candidate` values.
    var gathered: [String] = []
    var gatheringComplete = false
    var remoteUfrag: String?
    var ignoredSTUN: UInt64 = 0
    /// Whether video may be sent, held or probe (transport feedback; read by the encoder's thread).
    var feedbackWatchdog = FeedbackWatchdog()
    /// Skips video frames while a queue about to overflow drains (read by the encoder's
    /// thread).
    var queueDrainHold = QueueDrainHold()
    var targetVideoKbps = 0
    var ignoredCandidates: UInt64 = 0
    var refusedDTLS: UInt64 = 0
    var refusedSSRCPackets: UInt64 = 0
    var droppedCommands: UInt64 = 0
    var unknownFeedbackPackets: UInt64 = 0
    var delayBasedKbps: Int?
    var queueDelayMs: Double?
    var lossBasedKbps = 0
    var outboxDropped = 0

    init(created: Instant) { timeline = SetupTimeline(created: created) }
}

/// One call's transport and media state machine, without I/O: ICE, DTLS, SRTP, RTP/RTCP,
/// NACK/RTX, transport-wide feedback and rate control. It owns no socket, thread or
/// clock (after str0m's `Rtc`):
/// - **inputs**: a datagram received (``receive(_:from:localCandidate:now:)``), a timeout
///   (``handleTimeout(now:)``), media to send (``sendVideo(_:now:)``, audio through the
///   sender's hand-over) and signalling (``setRemote(_:now:)``, candidates);
/// - **outputs**: datagrams in ``outbox`` (each with the local candidate to send from),
///   the next deadline (``nextDeadline(now:)``), and events through
///   ``PeerConnectionHandlers`` (called synchronously, on the caller's thread).
///
/// Every method takes the time; wall-clock (NTP) time comes from the `ntpClock` given at
/// creation. ``PeerConnection`` drives one on its transport thread over real sockets; tests
/// drive two against each other over a simulated network on virtual time.
///
/// A value type holding references to its OpenSSL state (DTLS, SRTP) and its sender: keep
/// one copy and mutate it in place.
public struct CallCore {
    public let controlling: Bool
    let logger: Logger
    let dtlsContext: DTLSContext
    let handlers: PeerConnectionHandlers
    /// Logs what was refused from the network, rate-limited per kind.
    let refusals: RefusalLog
    /// What other threads read (status, metrics, the encoder's hold decisions).
    let shared: Locked<CallStatus>
    /// The send side; media threads hand frames to it directly.
    let sender: MediaSender
    /// Datagrams to send; the driver empties it after every input.
    public let outbox: DatagramOutbox
    let ntpClock: @Sendable (Instant) -> UInt64

    var agent: ICEAgent
    var dtls: DTLSEndpoint?
    /// DTLS records (with source and local candidate) waiting for ICE to validate their source.
    var pendingDTLS: [([UInt8], TransportAddress, Int)] = []
    var srtpIn: SRTPSession?
    var session: NegotiatedSession?
    var videoReceiver: VideoReceiver?
    /// The SSRCs the video and audio streams take (signalled, or the first seen).
    var videoSSRCs = SSRCFilter()
    var rtxSSRCs = SSRCFilter()
    var audioSSRCs = SSRCFilter()
    var audioStats: ReceiveStatistics?
    var nextRTCP: Instant?
    var lastReportSent: Instant?
    /// True once the connection has ended (either side); the driver then stops.
    public private(set) var closed = false
    /// Whether a video frame was handed to the sender yet (the timeline notes the first).
    var videoQueuedOnce = false
    /// A received RTP or RTCP packet, decrypted, as the parser reads it (capacity kept between packets).
    var rtpScratch: [UInt8] = { var a: [UInt8] = []; a.reserveCapacity(2048); return a }()
    /// Signalled candidates taken since the last ICE restart.
    var remoteCandidatesTaken = 0
    /// The agent's count of ignored candidates already reported.
    var agentIgnoredCandidates = 0
    var dtlsStarted = false
    var lastDTLSSource: (address: TransportAddress, path: Int)?
    var malformedLogged = 0
    /// When the pacer has the next packet due (nil: its queue is empty).
    var nextPacedSend: Instant?
    /// Congestion control for video.
    var bitrateController: BitrateController
    var pacingEnabled = false
    /// Transport-wide feedback for what we receive.
    var feedbackGenerator = TransportFeedbackGenerator()
    /// The RTCP about to be sent, and the results of the feedback received: storage kept
    /// from message to message.
    var rtcpOut: [UInt8] = []
    var feedbackResults: [SendHistory.Result] = []
    /// The peer's transport-wide sequence number extension ID, when negotiated.
    var remoteTWCCID: UInt8?
    /// What the encoder was last told, kbit/s.
    var encoderKbps: Int?
    /// The report blocks of the report being sent (storage kept).
    var reportBlocks: [ReceptionReport] = []
    /// Jitter for the report interval: seeded in tests, so a simulated call repeats.
    var random: SeededRandomGenerator

    /// Remote candidates taken from one description (offer, answer) or one trickle batch.
    public static let maxRemoteCandidatesPerDescription = 32
    /// Remote candidates taken over the connection's life (per ICE generation), `.local`
    /// names included; the rest are ignored, counted and logged.
    public static let maxRemoteCandidatesPerConnection = 50
    /// DTLS records held until their source is ICE-validated and DTLS is set up.
    static let maxPendingDTLS = 16

    /// A core for one call. `ntpClock` gives wall-clock NTP time at a monotonic instant
    /// (the real clock in a device; a fixed mapping on virtual time); `randomSeed` makes
    /// its timer jitter repeat (tests).
    public init(controlling: Bool, dtls: DTLSContext, maxVideoBitrateKbps: Int, handlers: PeerConnectionHandlers, logger: Logger,
                now: Instant, ntpClock: @escaping @Sendable (Instant) -> UInt64 = { _ in NTPTime.now() }, randomSeed: UInt64? = nil) {
        self.random = SeededRandomGenerator(seed: randomSeed ?? UInt64.random(in: 0...UInt64.max))
        self.controlling = controlling
        self.logger = logger
        self.dtlsContext = dtls
        self.handlers = handlers
        self.refusals = RefusalLog(logger: logger)
        self.ntpClock = ntpClock
        let outbox = DatagramOutbox()
        self.outbox = outbox
        self.sender = MediaSender(targetKbps: maxVideoBitrateKbps, outbox: outbox, ntpClock: ntpClock)
        var status = CallStatus(created: now)
        status.targetVideoKbps = maxVideoBitrateKbps
        self.shared = Locked(status)
        self.agent = ICEAgent(controlling: controlling)
        self.bitrateController = BitrateController(startKbps: maxVideoBitrateKbps, maximumKbps: maxVideoBitrateKbps)
    }

    // MARK: Inputs: set-up and signalling

    /// Adds a local candidate (a host socket's, or a relayed one) that sends from `base`;
    /// returns its index, the `path` of the datagrams it sends.
    @discardableResult
    public mutating func addLocalCandidate(_ c: ICECandidate, base: TransportAddress, now: Instant) -> Int {
        let index = agent.addLocalCandidate(c, base: base)
        agent.poll(now: now)
        flushICE(now: now)
        return index
    }

    /// Our ICE credentials and local candidates (`a=candidate` values).
    public var localICE: (ufrag: String, pwd: String, candidates: [String]) {
        (agent.localUfrag, agent.localPwd, agent.localCandidates.map { $0.candidate.sdpValue })
    }

    /// Applies the result of offer/answer: remote ICE credentials and candidates, DTLS role
    /// and fingerprint, and the negotiated codecs. Returns the `.local` candidates among
    /// the remote ones, for the driver to resolve (``addResolvedCandidate(_:now:)``).
    @discardableResult
    public mutating func setRemote(_ s: NegotiatedSession, now: Instant) -> [ICECandidate] {
        session = s
        shared.withLock { $0.timeline.remoteDescription = now; $0.remoteUfrag = s.remoteUfrag }
        agent.setRemoteCredentials(ufrag: s.remoteUfrag, pwd: s.remotePwd, now: now)
        let names = addRemoteCandidates(s.remoteCandidates, origin: "remote description", now: now)
        sender.configure(session: s)
        remoteTWCCID = [s.video, s.audio].compactMap { m in m.flatMap { $0.transportCC ? $0.extensions[TransportWideCC.uri] : nil } }.first
        if let v = s.video, v.receive {
            videoReceiver = VideoReceiver(payloadType: v.codec.payloadType, absCaptureTimeID: v.extensions[RTPExtensionURI.absCaptureTime])
            videoSSRCs = SSRCFilter(signalled: v.remoteSSRCs)
            rtxSSRCs = SSRCFilter(signalled: v.remoteRTXSSRCs)
        }
        if let a = s.audio, a.receive {
            audioStats = nil
            audioSSRCs = SSRCFilter(signalled: a.remoteSSRCs)
        }
        // Checks first: DTLS may have a queued ClientHello whose answer costs a signature.
        agent.poll(now: now)
        flushICE(now: now)
        setUpDTLS(now: now)
        return names
    }

    /// The peer's new credentials after an ICE restart (ours or its own).
    public mutating func setRemoteCredentials(ufrag: String, pwd: String, now: Instant) {
        agent.setRemoteCredentials(ufrag: ufrag, pwd: pwd, now: now)
        shared.withLock { $0.remoteUfrag = ufrag }
    }

    /// Takes signalled candidates (`a=candidate` values), at most
    /// ``maxRemoteCandidatesPerDescription`` of one description or trickle batch. Returns
    /// the `.local` ones, which need mDNS (the driver's) before the agent can use them.
    public mutating func addRemoteCandidates(_ sdps: [String], origin: String, now: Instant) -> [ICECandidate] {
        let limit = CallCore.maxRemoteCandidatesPerDescription
        var names: [ICECandidate] = []
        for sdp in sdps.prefix(limit) {
            guard remoteCandidatesTaken < CallCore.maxRemoteCandidatesPerConnection else {
                ignoreCandidates(1, reason: "over the cap of \(CallCore.maxRemoteCandidatesPerConnection) remote candidates per connection", now: now)
                continue
            }
            remoteCandidatesTaken += 1
            guard let c = ICECandidate(sdp: sdp) else {
                logger.notice("ignoring unparsable remote candidate", metadata: ["candidate": "\(sdp.prefix(80))"])
                continue
            }
            if c.isMDNS { names.append(c) } else { addToAgent(c, now: now) }
        }
        if sdps.count > limit {
            ignoreCandidates(sdps.count - limit, reason: "\(sdps.count) candidates in one \(origin), over the cap of \(limit)", now: now)
        }
        return names
    }

    /// A `.local` candidate whose name resolved (its host is now the address).
    public mutating func addResolvedCandidate(_ c: ICECandidate, now: Instant) {
        shared.withLock { $0.mdnsResolved += 1 }
        addToAgent(c, now: now)
    }

    mutating func ignoreCandidates(_ n: Int, reason: String, now: Instant) {
        shared.withLock { $0.ignoredCandidates += UInt64(n) }
        refusals.refused("remote candidates", source: shared.current.remoteUfrag.map { "peer ufrag \($0)" } ?? "peer", reason: reason, now: now)
    }

    /// Gives a candidate with a numeric address to the agent, which keeps a bounded table.
    mutating func addToAgent(_ c: ICECandidate, now: Instant) {
        if !agent.addRemoteCandidate(c, now: now) {
            ignoreCandidates(1, reason: "ICE agent holds \(agent.maxRemoteCandidates) remote candidates already; ignored \(c)", now: now)
        }
    }

    /// Restarts ICE (RFC 8445 §9) with fresh credentials and these host candidates; DTLS
    /// and SRTP carry on. `destinationPath` is where the old selected pair's local
    /// candidate now is (media keeps flowing there until a new pair is selected).
    public mutating func restartICE(hosts: [(candidate: ICECandidate, base: TransportAddress)], destinationPath: Int?, now: Instant) {
        var fresh = ICEAgent(controlling: agent.controlling)
        for h in hosts { fresh.addLocalCandidate(h.candidate, base: h.base) }
        agent = fresh
        remoteCandidatesTaken = 0
        agentIgnoredCandidates = 0
        sender.retarget(path: destinationPath)
        shared.withLock { $0.gathered = []; $0.gatheringComplete = false; $0.iceState = "checking" }
    }

    /// Asks the peer for a keyframe (a PLI).
    public mutating func requestKeyframe(now: Instant) {
        guard let v = videoReceiver, let media = v.remoteSSRC else { return }
        v.chain.keyframeRequested(now: now)
        sendRTCP([.pli(sender: sender.videoSSRC, media: media)])
        shared.withLock { $0.inboundVideo?.pliCount += 1 }
    }

    /// Hands one encoded video frame to the sender and sends what the pacer allows now.
    public mutating func sendVideo(_ data: [UInt8], isKeyframe: Bool, width: Int, height: Int, captureTime: Instant, captureNTP: UInt64, now: Instant) {
        let queued = sender.queueVideo(MediaSender.VideoFrame(data: data, isKeyframe: isKeyframe, width: width, height: height, captureTime: captureTime, captureNTP: captureNTP))
        if queued && !videoQueuedOnce {
            videoQueuedOnce = true
            shared.withLock { $0.timeline.firstVideoFrameQueued = now }
        }
        sendMedia(now: now)
    }

    /// Hands one Opus packet to the sender and sends it.
    public mutating func sendAudio(_ payload: [UInt8], samples: Int, now: Instant) {
        _ = payload.withUnsafeBytes { sender.queueAudio($0, samples: samples) }
        sendMedia(now: now)
    }

    /// Ends the connection from our side: RTCP BYE and DTLS close_notify tell the peer.
    public mutating func close(reason: String) {
        shutdown(reason: reason, notifyPeer: true, remote: false)
    }

    // MARK: Inputs: time

    /// When ``handleTimeout(now:)`` is next due (nil: only on input).
    public func nextDeadline(now: Instant) -> Instant? {
        var d = agent.nextDeadline
        func consider(_ x: Instant?) { if let x { d = d.map { min($0, x) } ?? x } }
        if let t = dtls?.timeout { consider(now + t) }
        consider(nextRTCP)
        consider(nextPacedSend)
        consider(feedbackGenerator.nextDeadline)
        if let v = videoReceiver, v.hasWork { consider(now + .milliseconds(10)) }
        return d
    }

    /// Runs what is due: ICE checks, DTLS retransmission, NACK and PLI, probes, feedback,
    /// reports, and media the pacer lets out.
    public mutating func handleTimeout(now: Instant) {
        guard !closed else { return }
        agent.poll(now: now)
        flushICE(now: now)
        if let d = dtls, d.timeout.map({ $0 == .zero }) ?? false {
            for out in d.handleTimeout() { sendOnSelected(out) }
            checkDTLS(now: now)
        }
        if let v = videoReceiver {
            let (frames, nacks, pli) = v.tick(now: now)
            deliver(frames, now: now)
            if !nacks.isEmpty { sendRTCP([.nack(sender: sender.videoSSRC, media: v.remoteSSRC ?? 0, lost: nacks)]) }
            if pli { sendRTCP([.pli(sender: sender.videoSSRC, media: v.remoteSSRC ?? 0)]); shared.withLock { $0.inboundVideo?.pliCount += 1 } }
            if !nacks.isEmpty {
                shared.withLock { $0.inboundVideo?.nackCount += UInt64(nacks.count) }
                // Loss: report it early (RFC 4585 §3.5, at most every 100 ms) so the sender's
                // congestion control hears of a bottleneck within a round trip.
                if let t = nextRTCP {
                    let early = max(now, (lastReportSent ?? now) + .milliseconds(100))
                    if early < t { nextRTCP = early }
                }
            }
        }
        if srtpIn != nil, pacingEnabled, let cluster = bitrateController.probeCluster(now: now) {
            sender.startProbe(cluster, now: now)
        }
        if srtpIn != nil, let d = feedbackGenerator.nextDeadline, d <= now {
            // Serialized straight into a buffer kept for it: no allocation per message.
            rtcpOut.removeAll(keepingCapacity: true)
            if feedbackGenerator.poll(now: now, senderSSRC: sender.videoSSRC, mediaSSRC: videoReceiver?.remoteSSRC ?? 0, appendingTo: &rtcpOut) > 0 {
                sender.sendRTCP(rtcpOut)
            }
        }
        if let t = nextRTCP, t <= now {
            sendReports(now: now)
            lastReportSent = now
            // About twice a second: the sender's congestion control acts on these reports.
            nextRTCP = now + .milliseconds(Int64.random(in: 250...750, using: &random))
        }
        sendMedia(now: now)
    }

    /// Media handed over by the media threads, and what the pacer lets out now.
    mutating func sendMedia(now: Instant) {
        let (next, sent) = sender.service(now: now)
        nextPacedSend = next
        if sent { shared.withLock { if $0.timeline.firstMediaSent == nil { $0.timeline.firstMediaSent = now } } }
    }

    // MARK: ICE

    mutating func flushICE(now: Instant) {
        for t in agent.takeTransmits() { outbox.append(t.bytes, to: t.to, path: t.localIndex) }
        for e in agent.takeEvents() {
            switch e {
            case let .selectedPair(localIndex, remote, lt, rt, nominated):
                let local = agent.localCandidates[localIndex].base
                logger.info("ICE selected pair", metadata: ["local": "\(local)", "remote": "\(remote)",
                                                            "types": "\(lt.rawValue)/\(rt.rawValue)", "nominated": "\(nominated)"])
                sender.setDestination(path: localIndex, remote: remote)
                shared.withLock {
                    if $0.timeline.iceConnected == nil { $0.timeline.iceConnected = now }
                    $0.iceState = "connected"
                    $0.pair.localCandidateType = lt.rawValue
                    $0.pair.remoteCandidateType = rt.rawValue
                    $0.pair.localAddress = local.description
                    $0.pair.remoteAddress = remote.description
                    $0.pair.nominated = nominated
                }
                startDTLSIfReady(now: now)
            case .failed(let reason):
                logger.warning("ICE failed", metadata: ["reason": "\(reason)"])
                shared.withLock { $0.iceState = "failed" }
                shutdown(reason: "ICE failed: \(reason)", notifyPeer: false, remote: true)
            case .roleChanged(let c):
                logger.info("ICE role conflict resolved", metadata: ["controlling": "\(c)"])
            }
        }
        if agent.state == .checking { shared.withLock { if $0.iceState == "new" { $0.iceState = "checking" } } }
        if agent.ignoredCandidates != agentIgnoredCandidates {
            let n = agent.ignoredCandidates - agentIgnoredCandidates
            agentIgnoredCandidates = agent.ignoredCandidates
            ignoreCandidates(n, reason: "peer-reflexive candidate table full (\(agent.maxPeerReflexiveCandidates)); checks from new addresses answered but not paired", now: now)
        }
        replayPendingDTLS(now: now)
    }

    // MARK: DTLS

    mutating func setUpDTLS(now: Instant) {
        guard let s = session, dtls == nil else { return }
        do {
            dtls = try DTLSEndpoint(context: dtlsContext, client: s.dtlsClient, remoteFingerprint: s.remoteFingerprint)
            shared.withLock { $0.dtlsState = "connecting" }
        } catch {
            logger.error("DTLS setup failed", metadata: ["reason": "\(error)"])
            return
        }
        // Flights that arrived before we knew the peer (it answered fast).
        replayPendingDTLS(now: now)
        startDTLSIfReady(now: now)
    }

    mutating func startDTLSIfReady(now: Instant) {
        guard let d = dtls, d.isClient, !dtlsStarted, agent.selectedPair != nil else { return }
        dtlsStarted = true
        for out in d.start() { sendOnSelected(out) }
    }

    /// Processes held DTLS records whose source ICE has validated since.
    mutating func replayPendingDTLS(now: Instant) {
        guard dtls != nil, !pendingDTLS.isEmpty else { return }
        let ready = pendingDTLS.filter { agent.isValidated($0.1) }
        guard !ready.isEmpty else { return }
        pendingDTLS.removeAll { agent.isValidated($0.1) }
        for (bytes, from, path) in ready { handleDTLS(bytes, from: from, path: path, now: now) }
    }

    mutating func handleDTLS(_ bytes: [UInt8], from: TransportAddress, path: Int, now: Instant) {
        // DTLS only from an address ICE has validated (a pair to it succeeded). A record from
        // an address with a check under way waits for the check; any other is dropped.
        guard let d = dtls, agent.isValidated(from) else {
            if agent.isKnownRemote(from) {
                if pendingDTLS.count >= CallCore.maxPendingDTLS {
                    pendingDTLS.removeFirst()
                    refuseDTLS(from: from, reason: "more than \(CallCore.maxPendingDTLS) records waiting for ICE; dropped the oldest", now: now)
                }
                pendingDTLS.append((bytes, from, path))
            } else {
                refuseDTLS(from: from, reason: "not an ICE-validated address", now: now)
            }
            return
        }
        lastDTLSSource = (from, path)
        let wasConnected = d.state == .connected
        for out in d.handle(datagram: bytes) { sendOnSelected(out, fallback: (from, path)) }
        if !wasConnected { checkDTLS(now: now) }
        if d.state == .closed && wasConnected {
            shutdown(reason: "peer closed DTLS (close_notify)", notifyPeer: false, remote: true)
        }
    }

    mutating func refuseDTLS(from: TransportAddress, reason: String, now: Instant) {
        shared.withLock { $0.refusedDTLS += 1 }
        refusals.refused("DTLS record", source: "\(from)", reason: reason, now: now)
    }

    mutating func checkDTLS(now: Instant) {
        guard let d = dtls else { return }
        switch d.state {
        case .connected where srtpIn == nil:
            guard let keys = d.srtpKeys() else {
                logger.error("DTLS connected without an SRTP profile")
                shutdown(reason: "peer negotiated no SRTP profile", notifyPeer: true, remote: false)
                return
            }
            let suite: SRTPSuite = keys.profile == .aeadAes128Gcm ? .aeadAes128Gcm : .aes128CmHmacSha1_80
            do {
                srtpIn = try SRTPSession(suite: suite, keyAndSalt: keys.remoteKeyAndSalt, inbound: true)
                try sender.setKeys(suite: suite, keyAndSalt: keys.localKeyAndSalt)
            } catch {
                logger.error("SRTP setup failed", metadata: ["reason": "\(error)"])
                return
            }
            shared.withLock { $0.timeline.dtlsConnected = now; $0.dtlsState = "connected" }
            logger.info("DTLS-SRTP connected", metadata: ["profile": "\(suite)", "role": "\(d.isClient ? "client" : "server")"])
            nextRTCP = now + .milliseconds(100)
            handlers.onMediaReady?()
        case .failed(let reason):
            logger.error("DTLS failed; no media will flow", metadata: ["reason": "\(reason)"])
            shared.withLock { $0.dtlsState = "failed" }
            shutdown(reason: "DTLS failed: \(reason)", notifyPeer: false, remote: true)
        default:
            break
        }
    }

    /// DTLS out on the selected pair, or (before one is selected) back where the peer's
    /// last record came from.
    mutating func sendOnSelected(_ bytes: [UInt8], fallback: (address: TransportAddress, path: Int)? = nil) {
        if let (i, remote) = agent.selectedPair {
            outbox.append(bytes, to: remote, path: i)
        } else if let to = fallback ?? lastDTLSSource {
            outbox.append(bytes, to: to.address, path: to.path)
        }
    }

    // MARK: Inputs: the network

    /// A datagram from `from`, received on local candidate `localCandidate`, demultiplexed
    /// by its first byte (RFC 7983): STUN, DTLS, or SRTP/SRTCP. `datagram` is the caller's
    /// buffer holding exactly the datagram; SRTP decrypts in place there.
    public mutating func receive(_ datagram: UnsafeMutableRawBufferPointer, from: TransportAddress, localCandidate: Int, now: Instant) {
        let length = datagram.count
        guard length > 0, !closed else { return }
        let first = datagram[0]
        switch first {
        case 0...3:
            guard let m = try? STUNMessage(parsing: Array(UnsafeRawBufferPointer(datagram))) else { countMalformed("STUN", from); return }
            let rejectedBefore = agent.rejectedMessages
            agent.handle(m, from: from, localIndex: localCandidate, now: now)
            if agent.rejectedMessages != rejectedBefore { shared.withLock { $0.ignoredSTUN += 1 } }
            flushICE(now: now)
        case 20...63:
            handleDTLS(Array(UnsafeRawBufferPointer(datagram)), from: from, path: localCandidate, now: now)
        case 128...191:
            guard let srtp = srtpIn, length >= 12 else { countMalformed("RTP before keys", from); return }
            let pt = datagram[1]
            if pt >= 192 && pt <= 223 {
                // The RTP path's reusable array (room for SRTCP's trailer): no allocation.
                rtpScratch.removeAll(keepingCapacity: true)
                rtpScratch.append(contentsOf: UnsafeRawBufferPointer(datagram))
                do { try srtp.unprotectRTCP(&rtpScratch) } catch { countSRTPFailure(error, from); return }
                handleRTCP(rtpScratch, now: now)
            } else {
                var len = length
                do { try srtp.unprotectRTP(buffer: datagram.baseAddress!, length: &len) } catch { countSRTPFailure(error, from); return }
                // Into the one reusable array (unique again once the last packet is dropped):
                // no allocation per packet.
                rtpScratch.removeAll(keepingCapacity: true)
                rtpScratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: datagram[0..<len]))
                guard let packet = try? RTPPacket(parsing: rtpScratch) else { countMalformed("RTP", from); return }
                handleRTP(packet, now: now)
            }
        default:
            countMalformed("unknown (first byte \(first))", from)
        }
    }

    mutating func countMalformed(_ kind: String, _ from: TransportAddress) {
        shared.withLock { $0.malformed += 1 }
        if malformedLogged < 5 {
            malformedLogged += 1
            logger.notice("dropped malformed datagram", metadata: ["kind": "\(kind)", "from": "\(from)"])
        }
    }

    mutating func countSRTPFailure(_ error: any Error, _ from: TransportAddress) {
        shared.withLock { $0.srtpFailures += 1 }
        if malformedLogged < 5 {
            malformedLogged += 1
            logger.notice("dropped packet that failed SRTP", metadata: ["reason": "\(error)", "from": "\(from)"])
        }
    }

    mutating func handleRTP(_ p: RTPPacket, now: Instant) {
        guard let s = session else { return }

        if let v = s.video, let rtx = v.rtxPayloadType, p.payloadType == rtx, let receiver = videoReceiver {
            // RFC 4588: the original sequence number, then the original payload. Padding
            // alone (the peer's bandwidth probe) only counts for transport feedback.
            guard rtxSSRCs.accept(p.ssrc, now: now) else { refusedSSRC(p, kind: "video RTX", now: now); return }
            recordTransportSequence(p, now: now)
            guard p.payload.count >= 2, let primary = receiver.remoteSSRC ?? v.remoteSSRCs.first else { return }
            let osn = UInt16(p.payload[p.payload.startIndex]) << 8 | UInt16(p.payload[p.payload.startIndex + 1])
            var original = p  // the header and its extensions as they came, without a copy
            original.payloadType = v.codec.payloadType
            original.sequenceNumber = osn
            original.ssrc = primary
            original.payload = p.payload.dropFirst(2)
            shared.withLock { $0.inboundVideo?.retransmittedPacketsReceived += 1 }
            deliver(receiver.receive(original, retransmission: true, now: now), now: now)
        } else if let v = s.video, p.payloadType == v.codec.payloadType, let receiver = videoReceiver {
            guard videoSSRCs.accept(p.ssrc, now: now) else { refusedSSRC(p, kind: "video", now: now); return }
            recordTransportSequence(p, now: now)
            let frames = receiver.receive(p, now: now)
            shared.withLock {
                if $0.inboundVideo == nil { $0.inboundVideo = InboundRTPStats(kind: "video", ssrc: p.ssrc) }
                let st = receiver.statistics
                $0.inboundVideo!.packetsReceived = st.packetsReceived
                $0.inboundVideo!.packetsLost = max(0, st.packetsLost)
                $0.inboundVideo!.jitter = st.jitterSeconds
                $0.inboundVideo!.bytesReceived = st.bytesReceived
                $0.videoBitrate.add(Double(p.payload.count), now: now)
                if $0.timeline.firstVideoPacketReceived == nil { $0.timeline.firstVideoPacketReceived = now }
            }
            deliver(frames, now: now)
        } else if let a = s.audio, p.payloadType == a.codec.payloadType {
            guard audioSSRCs.accept(p.ssrc, now: now) else { refusedSSRC(p, kind: "audio", now: now); return }
            recordTransportSequence(p, now: now)
            if audioStats == nil { audioStats = ReceiveStatistics(ssrc: p.ssrc, clockRate: 48000) }
            audioStats!.received(sequence: p.sequenceNumber, rtpTimestamp: p.timestamp, payloadBytes: p.payload.count, arrival: now)
            let st = audioStats!
            shared.withLock {
                if $0.inboundAudio == nil { $0.inboundAudio = InboundRTPStats(kind: "audio", ssrc: p.ssrc) }
                $0.inboundAudio!.packetsReceived = st.packetsReceived
                $0.inboundAudio!.packetsLost = max(0, st.packetsLost)
                $0.inboundAudio!.jitter = st.jitterSeconds
                $0.inboundAudio!.bytesReceived = st.bytesReceived
                $0.audioBitrate.add(Double(p.payload.count), now: now)
                if $0.timeline.firstAudioReceived == nil { $0.timeline.firstAudioReceived = now }
            }
            handlers.onAudioPacket?(p.payload, p.sequenceNumber, p.timestamp)
        }
    }

    /// Transport-wide sequence numbers are reported for every stream of the BUNDLE.
    mutating func recordTransportSequence(_ p: RTPPacket, now: Instant) {
        guard let id = remoteTWCCID, let ext = p.extension(id), ext.count >= 2 else { return }
        feedbackGenerator.received(sequence: UInt16(ext[ext.startIndex]) << 8 | UInt16(ext[ext.startIndex + 1]), now: now)
    }

    /// Media from an SSRC the stream does not take: counted and logged (rate-limited).
    mutating func refusedSSRC(_ p: RTPPacket, kind: String, now: Instant) {
        shared.withLock { $0.refusedSSRCPackets += 1 }
        refusals.refused("\(kind) RTP", source: "peer", reason: "SSRC \(p.ssrc) is not the stream's (payload type \(p.payloadType))", now: now)
    }

    mutating func deliver(_ frames: [AssembledFrame], now: Instant) {
        guard !frames.isEmpty else { return }
        shared.withLock {
            for f in frames {
                $0.inboundVideo?.framesReceived += 1
                if $0.inboundVideo != nil { $0.freezes.frameCompleted(at: now, into: &$0.inboundVideo!) }
                if let c = f.captureNTP {
                    $0.endToEnd.add(Double(NTPTime.toUnixNanoseconds(ntpClock(now)) - NTPTime.toUnixNanoseconds(c)) / 1e6)
                }
                if f.isKeyframe { $0.inboundVideo?.keyFramesReceived += 1 }
                $0.videoFPS.add(1, now: now)
            }
            $0.inboundVideo?.framesDropped = UInt64(videoReceiver?.framesDropped ?? 0)
            if $0.timeline.firstVideoFrameReceived == nil { $0.timeline.firstVideoFrameReceived = now }
        }
        for f in frames { handlers.onVideoFrame?(f, now) }
    }

    mutating func handleRTCP(_ bytes: [UInt8], now: Instant) {
        // Read in place: no copy of its lists (report blocks, NACKs, feedback).
        let packets: RTCPCompound
        do { packets = try RTCPCompound(parsing: bytes) } catch {
            shared.withLock { $0.malformed += 1 }
            return
        }
        if !pacingEnabled, packets.contains(where: { if case .receiverReport = $0 { return true }; if case .senderReport = $0 { return true }; if case .transportFeedback = $0 { return true }; return false }) {
            pacingEnabled = true
            sender.enablePacing()
        }
        for p in packets {
            switch p {
            case let .senderReport(ssrc, ntp, rtpTimestamp, _, _, reports):
                if videoReceiver?.remoteSSRC == ssrc {
                    videoReceiver?.statistics.receivedSenderReport(ntp: ntp, arrival: now)
                    handlers.onSenderReport?(true, ntp, rtpTimestamp)
                }
                if audioStats?.ssrc == ssrc {
                    audioStats?.receivedSenderReport(ntp: ntp, arrival: now)
                    handlers.onSenderReport?(false, ntp, rtpTimestamp)
                }
                handleReports(reports, now: now)
            case let .receiverReport(_, reports):
                handleReports(reports, now: now)
            case let .nack(_, media, lost):
                if media == sender.videoSSRC || media == 0 {
                    let refused = sender.retransmit(lost, now: now)
                    if refused.duplicates + refused.overBudget + refused.tooOld > 0 {
                        refusals.refused("retransmission", source: "NACK from \(agent.selectedPair.map { "\($0.remote)" } ?? "peer")",
                                         reason: "\(refused.duplicates) asked again within a round trip, \(refused.overBudget) over the resend budget, \(refused.tooOld) older than a second", now: now)
                    }
                }
            case .parsed(.pli):
                sender.countKeyframeRequest(fir: false)
                handlers.onKeyframeRequest?()
            case .parsed(.fir):
                sender.countKeyframeRequest(fir: true)
                handlers.onKeyframeRequest?()
            case let .transportFeedback(fb):
                let (unknown, arrived, lost) = sender.feedbackResults(fb, now: now, into: &feedbackResults)
                let results = feedbackResults
                shared.withLock { $0.feedbackWatchdog.feedbackArrived(now: now) }
                if unknown > 0 {
                    shared.withLock { $0.unknownFeedbackPackets += UInt64(unknown) }
                    refusals.refused("transport feedback", source: "peer", reason: "\(unknown) packets reported that we never sent (or long ago)", now: now)
                }
                if !results.isEmpty, let kbps = bitrateController.receivedTransportFeedback(results, arrived: arrived, lost: lost, now: now) {
                    targetBitrateChanged(kbps, now: now)
                } else {
                    updateEncoderTarget(now: now)
                }
                if let d = bitrateController.delayBased, let q = d.peakQueueMs {
                    // A queue about to overflow: hold video while it drains, and cut now.
                    let started = shared.withLock {
                        $0.queueDrainHold.queueMeasured(.microseconds(Int64(q * 1000)), jitterBound: .microseconds(Int64(d.queueThresholdMs * 1000)), now: now)
                    }
                    if started, let kbps = bitrateController.queueOverflowing(now: now) { targetBitrateChanged(kbps, now: now) }
                }
                if let d = bitrateController.delayBased {
                    shared.withLock { $0.delayBasedKbps = Int(d.estimateBps / 1000); $0.queueDelayMs = d.queueDelayMs }
                }
                updateResendInterval()
            case let .parsed(.remb(_, bitrate, _)):
                shared.withLock { $0.pair.availableOutgoingBitrate = Double(bitrate) }
                if let kbps = bitrateController.receivedREMB(bitsPerSecond: bitrate) { targetBitrateChanged(kbps, now: now) }
            case let .parsed(.bye(ssrcs, reason)):
                let known = ssrcs.contains { $0 == videoReceiver?.remoteSSRC || $0 == audioStats?.ssrc } || ssrcs.isEmpty
                if known || (videoReceiver?.remoteSSRC == nil && audioStats == nil) {
                    shutdown(reason: "peer sent RTCP BYE" + (reason.map { " (\($0))" } ?? ""), notifyPeer: false, remote: true)
                    return
                }
            default:
                break
            }
        }
    }

    mutating func targetBitrateChanged(_ kbps: Int, now: Instant) {
        shared.withLock { $0.targetVideoKbps = kbps; $0.lossBasedKbps = Int(bitrateController.lossBasedKbps) }
        sender.setTarget(kbps: kbps)
        updateEncoderTarget(now: now)
    }

    /// The encoder gets the target less what else shares the path: resends (as libwebrtc
    /// subtracts its protection overhead), audio, and video's own packet headers. The
    /// estimates measure everything on the wire; an encoder filling all of it would keep
    /// a standing queue at the bottleneck, and after a drop the queue would not drain.
    /// At least half the target stays the picture's.
    mutating func updateEncoderTarget(now: Instant) {
        let target = bitrateController.targetKbps
        let shared = sender.audioWireKbps(now: now) + sender.resendKbps(now: now)
        let media = max(target / 2, Int((Double(target) - shared) * CallCore.videoPayloadShare))
        if let last = encoderKbps, abs(media - last) < max(10, last / 20) { return }
        encoderKbps = media
        handlers.onTargetBitrate?(media)
    }
    /// Video payload's share of its packets on the wire: a 1 200-byte payload carries about
    /// 60 bytes of RTP header and extensions, SRTP tag and UDP/IP.
    static let videoPayloadShare = 0.95

    /// The round trip from the last RTCP report, and the queue the path holds now.
    var reportedRoundTrip: Duration?

    /// A NACK repeated within a round trip is answered already. The round trip grows by
    /// the bottleneck's queue: with a 100 ms queue ahead of it, a resend answered by a
    /// 40 ms report's clock would go out three times, all into the full queue.
    mutating func updateResendInterval() {
        guard let rtt = reportedRoundTrip else { return }
        let queueMs = bitrateController.delayBased?.peakQueueMs ?? 0
        sender.setRoundTrip(rtt + .microseconds(Int64(max(0, queueMs) * 1000)))
    }

    mutating func handleReports(_ reports: some Sequence<ReceptionReport>, now: Instant) {
        let nowNTP = ntpClock(now)
        for r in reports where r.ssrc == sender.videoSSRC {
            let sending = r.fractionLost > 0 ? sender.stats(now: now).first { $0.kind == "video" }.map { $0.bitrate / 1000 } : nil
            if let kbps = bitrateController.receivedReport(fractionLost: r.fractionLost, sendingKbps: sending, now: now) { targetBitrateChanged(kbps, now: now) }
        }
        for r in reports where r.ssrc == sender.videoSSRC || r.ssrc == sender.audioSSRC {
            if let rtt = roundTripTime(report: r, nowNTP: nowNTP) {
                shared.withLock { $0.pair.currentRoundTripTime = rtt }
                videoReceiver?.setRoundTrip(.nanoseconds(Int64(rtt * 1e9)))
                reportedRoundTrip = .nanoseconds(Int64(rtt * 1e9))
                updateResendInterval()
            }
        }
    }

    mutating func sendReports(now: Instant) {
        // Into storage kept for them (transport thread only): no array per report.
        reportBlocks.removeAll(keepingCapacity: true)
        if let v = videoReceiver, v.remoteSSRC != nil { reportBlocks.append(v.statistics.makeReport(now: now)) }
        if audioStats != nil { reportBlocks.append(audioStats!.makeReport(now: now)) }
        rtcpOut.removeAll(keepingCapacity: true)
        if sender.senderReports(blocks: reportBlocks, now: now, into: &rtcpOut) == 0 {
            RTCPPacket.receiverReport(ssrc: sender.videoSSRC, reports: reportBlocks).serialize(into: &rtcpOut)
        }
        RTCPPacket.sourceDescription([(sender.videoSSRC, sender.cname), (sender.audioSSRC, sender.cname)]).serialize(into: &rtcpOut)
        sender.sendRTCP(rtcpOut)
    }

    mutating func sendRTCP(_ packets: [RTCPPacket]) {
        rtcpOut.removeAll(keepingCapacity: true)
        for p in packets { p.serialize(into: &rtcpOut) }
        sender.sendRTCP(rtcpOut)
    }

    mutating func shutdown(reason: String, notifyPeer: Bool, remote: Bool) {
        guard !closed else { return }
        if notifyPeer {
            sendRTCP([.bye(ssrcs: [sender.videoSSRC, sender.audioSSRC], reason: reason)])
            if let d = dtls { for out in d.close() { sendOnSelected(out) } }
        }
        closed = true
        agent.close()
        sender.stop()
        shared.withLock { $0.closeReason = reason; $0.iceState = "closed"; $0.dtlsState = "closed" }
        logger.info("peer connection closed", metadata: ["reason": "\(reason)"])
        if remote { handlers.onClosed?(reason) }
    }
}
