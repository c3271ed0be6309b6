import DTLS
import ICE
import Logging
import NetworkCore
import RTP
import SDP
import SRTP
import STUN
import TURN
#if canImport(Glibc)
import Glibc
#endif

/// How a peer connection binds and what it trusts.
public struct PeerConnectionConfiguration: Sendable {
    public var dtls: DTLSContext
    /// Addresses to gather host candidates on; nil means every interface that is up.
    public var bindAddresses: [TransportAddress]?
    public var includeLoopback: Bool
    public var logger: Logger
    /// Resolves peers' `.local` candidates and answers for ours.
    public var mdns: MDNSService?
    /// Offer host candidates as random `.local` names instead of addresses.
    public var hideAddressesWithMDNS = false
    /// STUN servers for server-reflexive candidates.
    public var stunServers: [TransportAddress] = []
    /// TURN servers for relayed candidates.
    public var turnServers: [TURNServer] = []
    /// The video rate to start at and never exceed; congestion control moves below it.
    public var maxVideoBitrateKbps = 2000

    public init(dtls: DTLSContext, bindAddresses: [TransportAddress]? = nil, includeLoopback: Bool = false, logger: Logger) {
        self.dtls = dtls; self.bindAddresses = bindAddresses; self.includeLoopback = includeLoopback; self.logger = logger
    }
}

/// Callbacks from the transport thread. They run on that thread: keep them short.
public struct PeerConnectionHandlers: Sendable {
    /// SRTP keys exist: media may flow (start with a keyframe).
    public var onMediaReady: (@Sendable () -> Void)?
    /// The peer asked for a keyframe (PLI or FIR).
    public var onKeyframeRequest: (@Sendable () -> Void)?
    /// A complete video frame arrived.
    public var onVideoFrame: (@Sendable (AssembledFrame, Instant) -> Void)?
    /// A sender report from the peer: which stream (video or audio), its NTP time and the
    /// RTP timestamp that goes with it (lip sync maps one stream onto the other with these).
    public var onSenderReport: (@Sendable (_ video: Bool, _ ntp: UInt64, _ rtpTimestamp: UInt32) -> Void)?
    /// An Opus packet arrived (payload, RTP sequence number).
    public var onAudioPacket: (@Sendable (_ payload: ArraySlice<UInt8>, _ sequence: UInt16, _ timestamp: UInt32) -> Void)?
    /// The video rate the network allows changed (RTCP loss reports, REMB): kbit/s.
    public var onTargetBitrate: (@Sendable (Int) -> Void)?
    /// The connection ended from the far side or failed; the reason is for people.
    public var onClosed: (@Sendable (String) -> Void)?
    /// Gathering found a candidate or finished (see ``PeerConnection/gathered``): the
    /// signalling side trickles it without polling.
    public var onGatheringChange: (@Sendable () -> Void)?
    public init() {}
}

/// One WebRTC-compatible connection to one peer: ICE, DTLS-SRTP, RTP/RTCP over a BUNDLEd,
/// rtcp-muxed transport, with first-byte demultiplexing (RFC 7983).
///
/// Threading: a dedicated transport thread owns the sockets' receive side, the ICE agent,
/// DTLS and inbound SRTP, and runs every timer; calls from other threads are queued to it.
/// Media threads send through ``sendVideo(_:captureTime:captureNTP:)`` and
/// ``sendAudio(_:samples:)``, which take one lock around outbound SRTP and the RTP state
/// and write straight to the socket: no task or thread hop per packet.
public final class PeerConnection: @unchecked Sendable {
    public let controlling: Bool
    let logger: Logger
    /// Host sockets; replaced on the transport thread by an ICE restart.
    var sockets: [UDPSocket]
    let bindAddresses: [TransportAddress]?
    let includeLoopback: Bool
    let hideAddressesWithMDNS: Bool
    let dtlsContext: DTLSContext
    let mdns: MDNSService?
    let mdnsNames: Locked<[String]>

    // Transport-thread state.
    var agent: ICEAgent
    var dtls: DTLSEndpoint?
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
    var closed = false
    var gatherer = CandidateGatherer()
    let stunServers: [TransportAddress]
    let turnServers: [TURNServer]
    /// How each ICE local candidate (by index) sends: host socket or relay.
    var paths: [CandidatePath] = []
    var relays: [RelayAllocation] = []
    var receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
    /// A received RTP or RTCP packet, decrypted, as the parser reads it (capacity kept between packets).
    var rtpScratch: [UInt8] = { var a: [UInt8] = []; a.reserveCapacity(2048); return a }()

    // Shared state.
    let sender: MediaSender
    let commands = Locked<[(PeerConnection) -> Void]>([])
    let shared = Locked(SharedState())
    let handlers: PeerConnectionHandlers
    /// A pipe that wakes the transport thread when commands are queued.
    /// Updated by every turn of the transport loop; a stale value means it is stuck.
    public let heartbeat = Locked(Instant.now())
    let wakeRead: Int32
    let wakeWrite: Int32
    var thread: pthread_t?

    struct SharedState {
        var timeline = SetupTimeline(created: Instant.now())
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
        /// Candidates found after the host ones (srflx), and whether gathering is over.
        var gathered: [String] = []
        var gatheringComplete = false
        var remoteUfrag: String?
        var ignoredSTUN: UInt64 = 0
        var feedbackWatchdog = FeedbackWatchdog()
        /// Skips frames while the bottleneck's queue drains (transport thread measures,
        /// the encoder's thread asks).
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
    }

    /// Remote candidates taken from one description (offer, answer) or one trickle batch.
    public static let maxRemoteCandidatesPerDescription = 32
    /// Remote candidates taken over the connection's life (per ICE generation), `.local`
    /// names included; the rest are ignored, counted and logged.
    public static let maxRemoteCandidatesPerConnection = 50
    /// Signalled candidates taken since the last ICE restart (transport thread).
    var remoteCandidatesTaken = 0
    /// Logs what was refused from the network, rate-limited per kind.
    let refusals: RefusalLog

    /// Binds one socket per local address and gathers host candidates.
    public init(configuration: PeerConnectionConfiguration, controlling: Bool, handlers: PeerConnectionHandlers) throws {
        self.controlling = controlling
        self.logger = configuration.logger
        self.refusals = RefusalLog(logger: configuration.logger)
        self.dtlsContext = configuration.dtls
        bitrateController = BitrateController(startKbps: configuration.maxVideoBitrateKbps, maximumKbps: configuration.maxVideoBitrateKbps)
        shared.withLock { $0.targetVideoKbps = configuration.maxVideoBitrateKbps }
        self.handlers = handlers
        let addresses = configuration.bindAddresses ?? localInterfaceAddresses(includeLoopback: configuration.includeLoopback)
        var sockets: [UDPSocket] = []
        for a in addresses {
            do { sockets.append(try UDPSocket(bindTo: a)) } catch { configuration.logger.warning("cannot bind \(a): \(error)") }
        }
        guard !sockets.isEmpty else { throw SocketError("no local address to bind (looked at \(addresses.count))") }
        self.sockets = sockets
        self.bindAddresses = configuration.bindAddresses
        self.includeLoopback = configuration.includeLoopback
        self.hideAddressesWithMDNS = configuration.hideAddressesWithMDNS
        var agent = ICEAgent(controlling: controlling)
        let names = PeerConnection.addHostCandidates(to: &agent, sockets: sockets, mdns: configuration.hideAddressesWithMDNS ? configuration.mdns : nil)
        self.agent = agent
        self.hostICE = Locked((agent.localUfrag, agent.localPwd, agent.localCandidates.map { $0.candidate.sdpValue }))
        self.paths = sockets.indices.map { CandidatePath.socket($0) }
        self.stunServers = configuration.stunServers
        self.turnServers = configuration.turnServers
        self.mdns = configuration.mdns
        self.mdnsNames = Locked(names)
        self.sender = MediaSender(targetKbps: configuration.maxVideoBitrateKbps)
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw SocketError("pipe") }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
        shared.withLock { $0.timeline = SetupTimeline(created: Instant.now()) }
        thread = startThread(name: "pc-transport") { [self] in self.run() }
    }

    deinit {
        receiveBuffer.deallocate()
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    /// ICE credentials and host candidates for our offer or answer (fixed at creation;
    /// server-reflexive and relayed ones come later, see ``gathered``).
    public var localICE: (ufrag: String, pwd: String, candidates: [String]) { hostICE.current }
    let hostICE: Locked<(ufrag: String, pwd: String, candidates: [String])>

    /// Local RTP SSRCs for audio and video.
    public var localSSRCs: (audio: UInt32, video: UInt32) { (sender.audioSSRC, sender.videoSSRC) }

    /// The SSRC video retransmissions go out on when the peer takes RTX (RFC 4588).
    public var localVideoRTXSSRC: UInt32 { sender.rtxSSRC }

    /// Applies the result of offer/answer: remote ICE credentials and candidates, DTLS role
    /// and fingerprint, and the negotiated codecs.
    public func setRemote(_ s: NegotiatedSession) {
        perform { pc in
            pc.session = s
            let now = Instant.now()
            pc.shared.withLock { $0.timeline.remoteDescription = now }
            pc.agent.setRemoteCredentials(ufrag: s.remoteUfrag, pwd: s.remotePwd, now: now)
            pc.shared.withLock { $0.remoteUfrag = s.remoteUfrag }
            pc.addCandidates(s.remoteCandidates, now: now, origin: "remote description")
            pc.sender.configure(session: s)
            pc.remoteTWCCID = [s.video, s.audio].compactMap { m in m.flatMap { $0.transportCC ? $0.extensions[TransportWideCC.uri] : nil } }.first
            if let v = s.video, v.receive {
                pc.videoReceiver = VideoReceiver(payloadType: v.codec.payloadType, absCaptureTimeID: v.extensions[RTPExtensionURI.absCaptureTime])
                pc.videoSSRCs = SSRCFilter(signalled: v.remoteSSRCs)
                pc.rtxSSRCs = SSRCFilter(signalled: v.remoteRTXSSRCs)
            }
            if let a = s.audio, a.receive {
                pc.audioStats = nil
                pc.audioSSRCs = SSRCFilter(signalled: a.remoteSSRCs)
            }
            // Checks first: DTLS may have a queued ClientHello whose answer costs a signature.
            pc.agent.poll(now: now)
            pc.flushICE(now: now)
            pc.setUpDTLS(now: now)
        }
    }

    /// Adds a trickled remote candidate (`a=candidate` value).
    public func addRemoteCandidate(_ sdp: String) {
        perform { pc in pc.addCandidates([sdp], now: Instant.now(), origin: "trickle") }
    }

    /// Adds the trickled candidates of one signalling message (a PATCH body): at most
    /// ``maxRemoteCandidatesPerDescription`` of them are taken.
    public func addRemoteCandidates(_ sdps: [String]) {
        perform { pc in pc.addCandidates(sdps, now: Instant.now(), origin: "trickle") }
    }

    func addCandidates(_ sdps: [String], now: Instant, origin: String) {
        let limit = PeerConnection.maxRemoteCandidatesPerDescription
        for c in sdps.prefix(limit) { addCandidate(c, now: now) }
        if sdps.count > limit {
            ignoreCandidates(sdps.count - limit, reason: "\(sdps.count) candidates in one \(origin), over the cap of \(limit)", now: now)
        }
    }

    func ignoreCandidates(_ n: Int, reason: String, now: Instant) {
        shared.withLock { $0.ignoredCandidates += UInt64(n) }
        refusals.refused("remote candidates", source: shared.current.remoteUfrag.map { "peer ufrag \($0)" } ?? "peer", reason: reason, now: now)
    }

    /// Gives a candidate with a numeric address to the agent, which keeps a bounded table.
    func addToAgent(_ c: ICECandidate, now: Instant) {
        if !agent.addRemoteCandidate(c, now: now) {
            ignoreCandidates(1, reason: "ICE agent holds \(agent.maxRemoteCandidates) remote candidates already; ignored \(c)", now: now)
        }
    }

    func addCandidate(_ sdp: String, now: Instant) {
        guard remoteCandidatesTaken < PeerConnection.maxRemoteCandidatesPerConnection else {
            ignoreCandidates(1, reason: "over the cap of \(PeerConnection.maxRemoteCandidatesPerConnection) remote candidates per connection", now: now)
            return
        }
        remoteCandidatesTaken += 1
        guard let c = ICECandidate(sdp: sdp) else {
            logger.notice("ignoring unparsable remote candidate", metadata: ["candidate": "\(sdp.prefix(80))"])
            return
        }
        if c.isMDNS {
            guard let mdns else {
                // Without mDNS the peer-reflexive candidate from its first check still works.
                logger.debug("no mDNS: .local candidate left to peer-reflexive discovery", metadata: ["host": "\(c.host)"])
                return
            }
            let logger = self.logger
            mdns.resolve(c.host, port: c.port) { [weak self] address in
                guard let address else {
                    logger.notice("mDNS name did not resolve", metadata: ["host": "\(c.host)"])
                    return
                }
                self?.perform { pc in
                    var resolved = c
                    resolved.host = address.host
                    pc.shared.withLock { $0.mdnsResolved += 1 }
                    pc.addToAgent(resolved, now: Instant.now())
                }
            }
            return
        }
        addToAgent(c, now: now)
    }

    /// Ends the connection: RTCP BYE and DTLS close_notify tell the peer at once.
    public func close(reason: String = "hangup") {
        perform(essential: true) { pc in pc.shutdown(reason: reason, notifyPeer: true, remote: false) }
        join(thread)
        thread = nil
    }

    /// A snapshot for status pages and metrics.
    public var stats: PeerConnectionStats {
        let now = Instant.now()
        let s = shared.current
        var inbound: [InboundRTPStats] = []
        inbound.reserveCapacity(2)  // video and audio: one allocation
        if var v = s.inboundVideo {
            v.framesPerSecond = s.videoFPS.current(now: now); v.bitrate = s.videoBitrate.current(now: now) * 8
            if let (p50, p95) = s.endToEnd.percentiles() { v.endToEndDelayP50Ms = p50; v.endToEndDelayP95Ms = p95 }
            inbound.append(v)
        }
        if var a = s.inboundAudio { a.bitrate = s.audioBitrate.current(now: now) * 8; inbound.append(a) }
        return PeerConnectionStats(iceState: s.iceState, dtlsState: s.dtlsState, inbound: inbound, outbound: sender.stats(now: now),
                                   candidatePair: s.pair, timeline: s.timeline, malformedDatagrams: s.malformed, srtpFailures: s.srtpFailures,
                                   mdnsResolved: s.mdnsResolved, ignoredSTUN: s.ignoredSTUN, targetVideoBitrateKbps: s.targetVideoKbps,
                                   ignoredCandidates: s.ignoredCandidates, refusedDTLS: s.refusedDTLS, refusedSSRCPackets: s.refusedSSRCPackets,
                                   lossBasedKbps: s.lossBasedKbps, delayBasedKbps: s.delayBasedKbps, queueDelayMs: s.queueDelayMs,
                                   unknownFeedbackPackets: s.unknownFeedbackPackets)
    }

    /// Hands one encoded video frame to the transport thread, which paces it out (no-op
    /// until SRTP keys exist). Returns at once: no packetizing, SRTP or `sendto` here.
    /// Whether to send, hold or probe with the video frame at hand: transport feedback
    /// stopped for a second (``FeedbackWatchdog``). On hold the caller skips encoding
    /// and makes the next frame it sends a keyframe.
    public func videoFeedbackDecision(now: Instant = Instant.now()) -> FeedbackWatchdog.Decision {
        shared.withLock { $0.feedbackWatchdog.decide(now: now) }
    }

    /// Whether to encode the video frame at hand: false while the path's queue drains
    /// after it was seen about to overflow (``QueueDrainHold``, about 100 ms). Skip the
    /// frame without encoding it; the next one is an ordinary frame (the encoder's
    /// reference is the last frame it encoded, which the receiver has or gets resent).
    public func videoMayEncode(now: Instant = Instant.now()) -> Bool {
        shared.withLock { $0.queueDrainHold.maySend(now: now) }
    }

    public func sendVideo(_ data: [UInt8], isKeyframe: Bool, width: Int, height: Int, captureTime: Instant, captureNTP: UInt64) {
        let frame = MediaSender.VideoFrame(data: data, isKeyframe: isKeyframe, width: width, height: height, captureTime: captureTime, captureNTP: captureNTP)
        if sender.queueVideo(frame) { wake() }
    }

    /// Asks the peer for a keyframe (the decoder lost a reference or saw an error): a PLI,
    /// sent from the transport thread. The caller rate-limits.
    public func requestKeyframe() {
        perform { pc in
            guard let v = pc.videoReceiver, let media = v.remoteSSRC else { return }
            v.chain.keyframeRequested(now: Instant.now())
            pc.sendRTCP([.pli(sender: pc.sender.videoSSRC, media: media)])
            pc.shared.withLock { $0.inboundVideo?.pliCount += 1 }
        }
    }

    /// Hands one Opus packet of `samples` samples to the transport thread, which sends it
    /// ahead of queued video.
    public func sendAudio(_ payload: [UInt8], samples: Int) {
        payload.withUnsafeBytes { sendAudio($0, samples: samples) }
    }

    /// Hands one Opus packet of `samples` samples to the transport thread: copied into a
    /// reused slot, no allocation.
    public func sendAudio(_ payload: UnsafeRawBufferPointer, samples: Int) {
        if sender.queueAudio(payload, samples: samples) { wake() }
    }

    /// Wakes the transport thread's poll.
    func wake() {
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
    }

    /// Latency from capture to the first packet of each frame on the wire, in ms, recent frames.
    public var captureToWireSamples: [Double] { sender.captureToWire.withLock { $0.values } }

    /// Calls `body` with each capture → wire latency (ms) recorded after the first `seen`
    /// and still held, oldest first, without copying them; returns how many were ever recorded.
    @discardableResult
    public func captureToWire(since seen: UInt64, _ body: (Double) -> Void) -> UInt64 {
        sender.captureToWire.withLock { $0.forEach(since: seen, body) }
    }

    func markFirstMediaSent() {
        shared.withLock { if $0.timeline.firstMediaSent == nil { $0.timeline.firstMediaSent = Instant.now() } }
    }

    // MARK: - Transport thread

    /// Commands that may wait for the transport thread at once. Signalling is rate-limited
    /// long before this; the bound is for a bug or a flood that got past it.
    static let maxQueuedCommands = 256

    /// Queues `command` for the transport thread. Past ``maxQueuedCommands`` it is dropped
    /// (and counted), except `essential` ones (closing), which always go in.
    func perform(essential: Bool = false, _ command: @escaping (PeerConnection) -> Void) {
        let queued = commands.withLock { c -> Bool in
            guard essential || c.count < PeerConnection.maxQueuedCommands else { return false }
            c.append(command)
            return true
        }
        guard queued else {
            shared.withLock { $0.droppedCommands += 1 }
            refusals.refused("transport command", source: "local", reason: "\(PeerConnection.maxQueuedCommands) commands already wait for the transport thread", now: Instant.now())
            return
        }
        wake()
    }

    func run() {
        var fds: [pollfd] = []
        startGathering(now: Instant.now())
        while !closed {
            let now = Instant.now()
            heartbeat.withLock { $0 = now }
            let deadline = nextDeadline(now: now)
            let timeoutMS = deadline.map { d -> Int32 in d <= now ? 0 : Int32(min(1000, ((d - now).nanosecondsInt + 999_999) / 1_000_000)) } ?? 1000
            // Host sockets, the wake-up pipe, then the TCP/TLS links to TURN servers.
            fds.removeAll(keepingCapacity: true)
            for s in sockets { fds.append(pollfd(fd: s.fd, events: Int16(POLLIN), revents: 0)) }
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            // A failed link is left out: its closed socket would wake poll() at once, forever.
            let streamRelays = relays.filter { r in r.link != nil && r.lock.withLock { r.link!.failure == nil } }
            for r in streamRelays { fds.append(pollfd(fd: r.link!.fd, events: r.lock.withLock { r.link!.events }, revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), timeoutMS)
            if n > 0 {
                if fds[sockets.count].revents != 0 {
                    // Into the receive buffer (free between datagrams): no array per wake-up.
                    _ = read(wakeRead, receiveBuffer.baseAddress, 64)
                }
                for i in 0..<sockets.count where fds[i].revents != 0 {
                    // Drain the socket, but yield to timers after a burst.
                    var budget = 256
                    while budget > 0, let (len, from) = sockets[i].receive(into: receiveBuffer) {
                        receivedOnSocket(i, length: len, from: from)
                        budget -= 1
                    }
                }
                for (k, r) in streamRelays.enumerated() where fds[sockets.count + 1 + k].revents != 0 {
                    serviceLink(r)
                }
            }
            // Every turn of the loop: nothing to take costs nothing (emptying the shared
            // array would allocate a new one each time).
            let queued = commands.withLock { c -> [(PeerConnection) -> Void] in
                guard !c.isEmpty else { return [] }
                defer { c = [] }
                return c
            }
            for c in queued { c(self) }
            if closed { break }
            let later = Instant.now()
            runTimers(now: later)
            sendMedia(now: later)
        }
    }

    /// Media handed over by the media threads, and what the pacer lets out now.
    func sendMedia(now: Instant) {
        let (next, sent) = sender.service(now: now)
        nextPacedSend = next
        if sent { markFirstMediaSent() }
    }
    /// When the pacer has the next packet due (nil: its queue is empty).
    var nextPacedSend: Instant?

    /// Reads frames from a TCP/TLS link to a TURN server.
    func serviceLink(_ r: RelayAllocation) {
        let (frames, failure) = r.lock.withLock { () -> ([[UInt8]], String?) in
            let f = r.link!.service()
            if let failure = r.link!.failure { r.client.transportFailed(failure) }
            return (f, r.link!.failure)
        }
        for f in frames { handleFromServer(r, f) }
        if failure != nil { checkRelay(r) }
    }

    func nextDeadline(now: Instant) -> Instant? {
        var d = agent.nextDeadline
        func consider(_ x: Instant?) { if let x { d = d.map { min($0, x) } ?? x } }
        consider(gatherer.nextDeadline)
        for r in relays { consider(r.lock.withLock { r.client.nextDeadline }) }
        if let t = dtls?.timeout { consider(now + t) }
        consider(nextRTCP)
        consider(nextPacedSend)
        consider(feedbackGenerator.nextDeadline)
        if let v = videoReceiver, v.hasWork { consider(now + .milliseconds(10)) }
        return d
    }

    func runTimers(now: Instant) {
        agent.poll(now: now)
        flushICE(now: now)
        if !gatherer.complete {
            for (i, to, bytes) in gatherer.poll(now: now) { sockets[i].send(bytes, to: to) }
            finishGatheringIfDone()
        }
        for r in relays {
            let out = r.lock.withLock { r.client.poll(now: now) }
            for b in out { r.sendToServer(b) }
            checkRelay(r)
            let dropped = r.takeNewLinkDrops()
            if dropped > 0 {
                refusals.refused("output to TURN server", source: "\(r.server.address)",
                                 reason: "\(dropped) frames dropped: more than \(StreamLink.maxPendingBytes) bytes waiting on the connection", now: now)
            }
        }
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
            nextRTCP = now + .milliseconds(Int64.random(in: 250...750))
        }
    }

    func flushICE(now: Instant) {
        for t in agent.takeTransmits() { send(t.bytes, to: t.to, path: t.localIndex) }
        for e in agent.takeEvents() {
            switch e {
            case let .selectedPair(localIndex, remote, lt, rt, nominated):
                logger.info("ICE selected pair", metadata: ["local": "\(localAddress(localIndex))", "remote": "\(remote)",
                                                            "types": "\(lt.rawValue)/\(rt.rawValue)", "nominated": "\(nominated)"])
                switch paths[localIndex] {
                case .socket(let i): sender.setDestination(socket: sockets[i], remote: remote)
                case .relay(let r): sender.setDestination(socket: r.socket ?? sockets[0], remote: remote, relay: r)
                }
                shared.withLock {
                    if $0.timeline.iceConnected == nil { $0.timeline.iceConnected = now }
                    $0.iceState = "connected"
                    $0.pair.localCandidateType = lt.rawValue
                    $0.pair.remoteCandidateType = rt.rawValue
                    $0.pair.localAddress = localAddress(localIndex).description
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

    /// The agent's count of ignored candidates already reported.
    var agentIgnoredCandidates = 0

    /// Adds a host candidate per socket (an mDNS name instead of the address when asked);
    /// returns the names registered.
    static func addHostCandidates(to agent: inout ICEAgent, sockets: [UDPSocket], mdns: MDNSService?) -> [String] {
        var names: [String] = []
        for (i, s) in sockets.enumerated() {
            let pref = UInt32(65535 - i * 256)
            var host = s.localAddress.host
            if let mdns, s.localAddress.family == .ipv4, !s.localAddress.isLoopback {
                // A fresh name per call, as browsers do, so the name tracks nothing.
                host = Hex.encode(secureRandomBytes(16)).uuidShaped + ".local"
                mdns.register(name: host, address: s.localAddress)
                names.append(host)
            }
            let c = ICECandidate(foundation: String(CRC32.checksum(Array(s.localAddress.host.utf8)) % 100_000_000), priority: ICECandidate.priority(type: .host, localPreference: pref),
                                 host: host, port: s.localAddress.port, type: .host)
            agent.addLocalCandidate(c, base: s.localAddress)
        }
        return names
    }

    // MARK: ICE restart

    /// Restarts ICE (RFC 8445 §9): new credentials, host candidates on the addresses that
    /// exist now (sockets on vanished addresses are dropped, new addresses get sockets),
    /// gathering anew. DTLS and SRTP carry on; media resumes on the new pair. Returns the
    /// new credentials and host candidates for the signalling path.
    public func restartICE() -> (ufrag: String, pwd: String, candidates: [String]) {
        let done = Semaphore()
        perform { pc in
            pc.doRestart(now: Instant.now())
            done.signal()
        }
        _ = done.wait(timeout: .seconds(2))
        return localICE
    }

    /// The peer's new credentials after a restart (ours or its own).
    public func setRemoteCredentials(ufrag: String, pwd: String) {
        perform { pc in
            pc.agent.setRemoteCredentials(ufrag: ufrag, pwd: pwd, now: Instant.now())
            pc.shared.withLock { $0.remoteUfrag = ufrag }
        }
    }

    /// The peer's current ICE username fragment.
    public var remoteUfrag: String? { shared.current.remoteUfrag }

    func doRestart(now: Instant) {
        let addresses = bindAddresses ?? localInterfaceAddresses(includeLoopback: includeLoopback)
        var fresh = sockets.filter { s in addresses.contains { $0.ip == s.localAddress.ip } }
        for a in addresses where !fresh.contains(where: { $0.localAddress.ip == a.ip }) {
            if let s = try? UDPSocket(bindTo: a) { fresh.append(s) }
        }
        guard !fresh.isEmpty else {
            logger.warning("ICE restart: no local address left")
            return
        }
        for r in relays { for b in r.lock.withLock({ r.client.release() }) { r.sendToServer(b) } }
        relays = []
        for n in mdnsNames.current { mdns?.unregister(name: n) }
        sockets = fresh
        var agent = ICEAgent(controlling: self.agent.controlling)
        let names = PeerConnection.addHostCandidates(to: &agent, sockets: sockets, mdns: hideAddressesWithMDNS ? mdns : nil)
        mdnsNames.withLock { $0 = names }
        self.agent = agent
        remoteCandidatesTaken = 0
        agentIgnoredCandidates = 0
        paths = sockets.indices.map { CandidatePath.socket($0) }
        gatherer = CandidateGatherer()
        shared.withLock { $0.gathered = []; $0.gatheringComplete = false; $0.iceState = "checking" }
        hostICE.withLock { $0 = (agent.localUfrag, agent.localPwd, agent.localCandidates.map { $0.candidate.sdpValue }) }
        logger.info("ICE restart", metadata: ["addresses": "\(sockets.map { $0.localAddress.host }.joined(separator: ", "))"])
        startGathering(now: now)
    }

    // MARK: Gathering

    func startGathering(now: Instant) {
        let requests = gatherer.start(sockets: sockets.map(\.localAddress), servers: stunServers, now: now)
        for (i, to, bytes) in requests { sockets[i].send(bytes, to: to) }
        for server in turnServers {
            guard let i = sockets.firstIndex(where: { $0.localAddress.family == server.address.family && !$0.localAddress.isLoopback }) else { continue }
            let r: RelayAllocation
            if server.transport == .udp {
                r = RelayAllocation(server: server, socket: sockets[i], socketIndex: i)
            } else {
                do {
                    r = RelayAllocation(server: server, link: try StreamLink(server: server.address, source: sockets[i].localAddress, tls: server.transport == .tls,
                                                                             verify: server.verifyCertificate, caFile: server.caFile, serverName: server.serverName))
                } catch {
                    logger.warning("TURN allocation failed", metadata: ["server": "\(server.address)", "REASON": "\(error)"])
                    continue
                }
            }
            relays.append(r)
            let out = r.lock.withLock { r.client.start(now: now) }
            for b in out { r.sendToServer(b) }
        }
        finishGatheringIfDone()
    }

    /// The address a local candidate sends from (the relayed address for relays).
    func localAddress(_ index: Int) -> TransportAddress {
        switch paths[index] {
        case .socket(let i): return sockets[i].localAddress
        case .relay: return agent.localCandidates[index].base
        }
    }

    func send(_ bytes: [UInt8], to: TransportAddress, path index: Int) {
        switch paths[index] {
        case .socket(let i): sockets[i].send(bytes, to: to)
        case .relay(let r):
            logger.trace("via relay", metadata: ["to": "\(to)", "bytes": "\(bytes.count)"])
            r.send(bytes, to: to)
        }
    }

    /// A datagram on host socket `i`: from a TURN server we use, or from a peer.
    func receivedOnSocket(_ i: Int, length: Int, from: TransportAddress) {
        if let r = relays.first(where: { $0.socketIndex == i && $0.server.address == from }) {
            let first = receiveBuffer[0]
            // The STUN server may be the TURN server too: binding answers go to the gatherer.
            let isGatherer = first < 4 && length >= 20 && gatherer.owns(Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[8..<20])))
            if !isGatherer {
                handleFromServer(r, Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length])))
                return
            }
        }
        handleDatagram(length: length, from: from, candidate: i)
    }

    /// A frame from a TURN server: ChannelData or a Data indication carry a peer's
    /// datagram; anything else is for the TURN client.
    func handleFromServer(_ r: RelayAllocation, _ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        if TURNClient.isChannelData(first) {
            let unwrapped = r.lock.withLock { bytes.withUnsafeBytes { r.client.unwrapChannelData($0) } }
            guard let (peer, range) = unwrapped, let index = r.candidateIndex, range.count <= receiveBuffer.count else { countMalformed("ChannelData", r.server.address); return }
            bytes[range].withUnsafeBytes { receiveBuffer.copyMemory(from: $0) }
            handleDatagram(length: range.count, from: peer, candidate: index)
            return
        }
        guard first < 4, let m = try? STUNMessage(parsing: bytes) else { countMalformed("from TURN server", r.server.address); return }
        let (out, event, ignored) = r.lock.withLock { () -> ([[UInt8]], TURNClient.Event?, Bool) in
            let before = r.client.ignoredResponses
            let (o, e) = r.client.handle(m, now: Instant.now())
            return (o, e, r.client.ignoredResponses > before)
        }
        if ignored { shared.withLock { $0.ignoredSTUN += 1 } }
        logger.trace("from TURN server", metadata: ["method": "\(m.method)", "class": "\(m.messageClass)", "error": "\(m.errorCode.map { "\($0.code) \($0.reason)" } ?? "")"])
        for b in out { r.sendToServer(b) }
        if case .data(let peer, let payload)? = event, let index = r.candidateIndex, payload.count <= receiveBuffer.count {
            payload.withUnsafeBytes { receiveBuffer.copyMemory(from: $0) }
            handleDatagram(length: payload.count, from: peer, candidate: index)
            return
        }
        checkRelay(r)
    }

    /// Turns a fresh allocation into a relay candidate, or reports why there is none.
    func checkRelay(_ r: RelayAllocation) {
        let (state, relayed, mapped) = r.lock.withLock { (r.client.state, r.client.relayedAddress, r.client.mappedAddress) }
        switch state {
        case .allocated where r.candidateIndex == nil:
            guard let relayed else { return }
            let c = ICECandidate(foundation: String(CRC32.checksum(Array(("relay" + r.server.address.description).utf8)) % 100_000_000),
                                 priority: ICECandidate.priority(type: .relay, localPreference: 65535 - UInt32(relays.count)),
                                 host: relayed.host, port: relayed.port, type: .relay,
                                 relatedHost: mapped?.host, relatedPort: mapped?.port)
            let index = agent.addLocalCandidate(c, base: relayed)
            paths.append(.relay(r))
            r.candidateIndex = index
            logger.info("gathered relayed candidate", metadata: ["candidate": "\(c.sdpValue)", "server": "\(r.server.address)"])
            shared.withLock { $0.gathered.append(c.sdpValue) }
            handlers.onGatheringChange?()
            agent.poll(now: Instant.now())
            flushICE(now: Instant.now())
            finishGatheringIfDone()
        case .failed(let reason):
            if r.shouldReport() {
                logger.warning("TURN allocation failed", metadata: ["server": "\(r.server.address)", "REASON": "\(reason)"])
            }
            finishGatheringIfDone()
        default:
            break
        }
    }

    func finishGatheringIfDone() {
        guard gatherer.complete else { return }
        let relaysSettled = relays.allSatisfy { r in
            r.lock.withLock { if case .allocating = r.client.state { return false }; return true }
        }
        guard relaysSettled else { return }
        let first = shared.withLock { s -> Bool in defer { s.gatheringComplete = true }; return !s.gatheringComplete }
        if first {
            handlers.onGatheringChange?()
            for server in gatherer.unreachable {
                logger.warning("STUN server did not answer", metadata: ["server": "\(server)", "REASON": "no response to \(gatherer.maxAttempts) binding requests"])
            }
        }
    }

    /// Candidates found after the host ones, and whether gathering is over.
    public var gathered: (candidates: [String], complete: Bool) {
        let s = shared.current
        return (s.gathered, s.gatheringComplete)
    }

    // MARK: DTLS

    func setUpDTLS(now: Instant) {
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

    var dtlsStarted = false
    func startDTLSIfReady(now: Instant) {
        guard let d = dtls, d.isClient, !dtlsStarted, agent.selectedPair != nil else { return }
        dtlsStarted = true
        for out in d.start() { sendOnSelected(out) }
    }

    /// DTLS records held until their source is ICE-validated and DTLS is set up.
    static let maxPendingDTLS = 16

    /// Processes held DTLS records whose source ICE has validated since.
    func replayPendingDTLS(now: Instant) {
        guard dtls != nil, !pendingDTLS.isEmpty else { return }
        let ready = pendingDTLS.filter { agent.isValidated($0.1) }
        guard !ready.isEmpty else { return }
        pendingDTLS.removeAll { agent.isValidated($0.1) }
        for (bytes, from, _) in ready { handleDTLS(bytes, from: from, now: now) }
    }

    var lastDTLSSource: TransportAddress?
    func handleDTLS(_ bytes: [UInt8], from: TransportAddress, now: Instant) {
        // DTLS only from an address ICE has validated (a pair to it succeeded). A record from
        // an address with a check under way waits for the check; any other is dropped.
        guard let d = dtls, agent.isValidated(from) else {
            if agent.isKnownRemote(from) {
                if pendingDTLS.count >= PeerConnection.maxPendingDTLS {
                    pendingDTLS.removeFirst()
                    refuseDTLS(from: from, reason: "more than \(PeerConnection.maxPendingDTLS) records waiting for ICE; dropped the oldest", now: now)
                }
                pendingDTLS.append((bytes, from, 0))
            } else {
                refuseDTLS(from: from, reason: "not an ICE-validated address", now: now)
            }
            return
        }
        lastDTLSSource = from
        let wasConnected = d.state == .connected
        for out in d.handle(datagram: bytes) { sendOnSelected(out, fallback: from) }
        if !wasConnected { checkDTLS(now: now) }
        if d.state == .closed && wasConnected {
            shutdown(reason: "peer closed DTLS (close_notify)", notifyPeer: false, remote: true)
        }
    }

    func refuseDTLS(from: TransportAddress, reason: String, now: Instant) {
        shared.withLock { $0.refusedDTLS += 1 }
        refusals.refused("DTLS record", source: "\(from)", reason: reason, now: now)
    }

    func checkDTLS(now: Instant) {
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

    func sendOnSelected(_ bytes: [UInt8], fallback: TransportAddress? = nil) {
        if let (i, remote) = agent.selectedPair {
            send(bytes, to: remote, path: i)
        } else if let to = fallback ?? lastDTLSSource, let s = sockets.first(where: { $0.localAddress.family == to.family }) {
            s.send(bytes, to: to)
        }
    }

    // MARK: Receive path

    func handleDatagram(length: Int, from: TransportAddress, candidate socket: Int) {
        guard length > 0 else { return }
        let first = receiveBuffer[0]
        let now = Instant.now()
        switch first {
        case 0...3:
            let bytes = Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length]))
            guard let m = try? STUNMessage(parsing: bytes) else { countMalformed("STUN", from); return }
            if m.messageClass == .successResponse || m.messageClass == .errorResponse {
                let (matched, candidate) = gatherer.handle(m, from: from, base: localAddress(socket))
                if matched {
                    if let c = candidate {
                        logger.info("gathered server-reflexive candidate", metadata: ["candidate": "\(c)"])
                        shared.withLock { $0.gathered.append(c) }
                        handlers.onGatheringChange?()
                    }
                    finishGatheringIfDone()
                    return
                }
            }
            let rejectedBefore = agent.rejectedMessages
            agent.handle(m, from: from, localIndex: socket, now: now)
            if agent.rejectedMessages != rejectedBefore { shared.withLock { $0.ignoredSTUN += 1 } }
            flushICE(now: now)
        case 20...63:
            handleDTLS(Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length])), from: from, now: now)
        case 128...191:
            guard let srtp = srtpIn, length >= 12 else { countMalformed("RTP before keys", from); return }
            let pt = receiveBuffer[1]
            if pt >= 192 && pt <= 223 {
                // The RTP path's reusable array (room for SRTCP's trailer): no allocation.
                rtpScratch.removeAll(keepingCapacity: true)
                rtpScratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length]))
                do { try srtp.unprotectRTCP(&rtpScratch) } catch { countSRTPFailure(error, from); return }
                handleRTCP(rtpScratch, now: now)
            } else {
                var len = length
                do { try srtp.unprotectRTP(buffer: receiveBuffer.baseAddress!, length: &len) } catch { countSRTPFailure(error, from); return }
                // Into the one reusable array (unique again once the last packet is dropped):
                // no allocation per packet.
                rtpScratch.removeAll(keepingCapacity: true)
                rtpScratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<len]))
                guard let packet = try? RTPPacket(parsing: rtpScratch) else { countMalformed("RTP", from); return }
                handleRTP(packet, now: now)
            }
        default:
            countMalformed("unknown (first byte \(first))", from)
        }
    }

    var malformedLogged = 0
    func countMalformed(_ kind: String, _ from: TransportAddress) {
        shared.withLock { $0.malformed += 1 }
        if malformedLogged < 5 {
            malformedLogged += 1
            logger.notice("dropped malformed datagram", metadata: ["kind": "\(kind)", "from": "\(from)"])
        }
    }

    func countSRTPFailure(_ error: any Error, _ from: TransportAddress) {
        shared.withLock { $0.srtpFailures += 1 }
        if malformedLogged < 5 {
            malformedLogged += 1
            logger.notice("dropped packet that failed SRTP", metadata: ["reason": "\(error)", "from": "\(from)"])
        }
    }

    func handleRTP(_ p: RTPPacket, now: Instant) {
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
            deliver(receiver.receive(original, now: now), now: now)
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
    func recordTransportSequence(_ p: RTPPacket, now: Instant) {
        guard let id = remoteTWCCID, let ext = p.extension(id), ext.count >= 2 else { return }
        feedbackGenerator.received(sequence: UInt16(ext[ext.startIndex]) << 8 | UInt16(ext[ext.startIndex + 1]), now: now)
    }

    /// Media from an SSRC the stream does not take: counted and logged (rate-limited).
    func refusedSSRC(_ p: RTPPacket, kind: String, now: Instant) {
        shared.withLock { $0.refusedSSRCPackets += 1 }
        refusals.refused("\(kind) RTP", source: "peer", reason: "SSRC \(p.ssrc) is not the stream's (payload type \(p.payloadType))", now: now)
    }

    func deliver(_ frames: [AssembledFrame], now: Instant) {
        guard !frames.isEmpty else { return }
        shared.withLock {
            for f in frames {
                $0.inboundVideo?.framesReceived += 1
                if $0.inboundVideo != nil { $0.freezes.frameCompleted(at: now, into: &$0.inboundVideo!) }
                if let c = f.captureNTP {
                    $0.endToEnd.add(Double(NTPTime.toUnixNanoseconds(NTPTime.now()) - NTPTime.toUnixNanoseconds(c)) / 1e6)
                }
                if f.isKeyframe { $0.inboundVideo?.keyFramesReceived += 1 }
                $0.videoFPS.add(1, now: now)
            }
            $0.inboundVideo?.framesDropped = UInt64(videoReceiver?.framesDropped ?? 0)
            if $0.timeline.firstVideoFrameReceived == nil { $0.timeline.firstVideoFrameReceived = now }
        }
        for f in frames { handlers.onVideoFrame?(f, now) }
    }

    func handleRTCP(_ bytes: [UInt8], now: Instant) {
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
                handleReports(reports)
            case let .receiverReport(_, reports):
                handleReports(reports)
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
                    targetBitrateChanged(kbps)
                } else {
                    updateEncoderTarget(now: now)
                }
                if let d = bitrateController.delayBased, let q = d.peakQueueMs {
                    // A queue about to overflow: hold video while it drains, and cut now.
                    let started = shared.withLock {
                        $0.queueDrainHold.queueMeasured(.microseconds(Int64(q * 1000)), jitterBound: .microseconds(Int64(d.queueThresholdMs * 1000)), now: now)
                    }
                    if started, let kbps = bitrateController.queueOverflowing(now: now) { targetBitrateChanged(kbps) }
                }
                if let d = bitrateController.delayBased {
                    shared.withLock { $0.delayBasedKbps = Int(d.estimateBps / 1000); $0.queueDelayMs = d.queueDelayMs }
                }
            case let .parsed(.remb(_, bitrate, _)):
                shared.withLock { $0.pair.availableOutgoingBitrate = Double(bitrate) }
                if let kbps = bitrateController.receivedREMB(bitsPerSecond: bitrate) { targetBitrateChanged(kbps) }
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

    /// Congestion control for video (transport thread only).
    var bitrateController: BitrateController
    var pacingEnabled = false
    /// Transport-wide feedback for what we receive (transport thread only).
    var feedbackGenerator = TransportFeedbackGenerator()
    /// The RTCP about to be sent, and the results of the feedback received: storage kept
    /// from message to message (transport thread only).
    var rtcpOut: [UInt8] = []
    var feedbackResults: [SendHistory.Result] = []
    /// The peer's transport-wide sequence number extension ID, when negotiated.
    var remoteTWCCID: UInt8?

    func targetBitrateChanged(_ kbps: Int) {
        shared.withLock { $0.targetVideoKbps = kbps; $0.lossBasedKbps = Int(bitrateController.lossBasedKbps) }
        sender.setTarget(kbps: kbps)
        updateEncoderTarget(now: Instant.now())
    }

    /// What the encoder was last told, kbit/s.
    var encoderKbps: Int?

    /// The encoder gets the target less what resends take (as libwebrtc subtracts its
    /// protection overhead): after a drop the resends of what the queue lost would
    /// otherwise ride on top of a full-rate picture, keep the queue full and lose more.
    /// At least half the target stays the picture's.
    func updateEncoderTarget(now: Instant) {
        let target = bitrateController.targetKbps
        let media = max(target / 2, target - Int(sender.resendKbps(now: now)))
        if let last = encoderKbps, abs(media - last) < max(10, last / 20), media != target { return }
        guard media != encoderKbps else { return }
        encoderKbps = media
        handlers.onTargetBitrate?(media)
    }

    func handleReports(_ reports: some Sequence<ReceptionReport>) {
        let nowNTP = NTPTime.now()
        for r in reports where r.ssrc == sender.videoSSRC {
            let now = Instant.now()
            let sending = r.fractionLost > 0 ? sender.stats(now: now).first { $0.kind == "video" }.map { $0.bitrate / 1000 } : nil
            if let kbps = bitrateController.receivedReport(fractionLost: r.fractionLost, sendingKbps: sending, now: now) { targetBitrateChanged(kbps) }
        }
        for r in reports where r.ssrc == sender.videoSSRC || r.ssrc == sender.audioSSRC {
            if let rtt = roundTripTime(report: r, nowNTP: nowNTP) {
                shared.withLock { $0.pair.currentRoundTripTime = rtt }
                videoReceiver?.setRoundTrip(.nanoseconds(Int64(rtt * 1e9)))
                sender.setRoundTrip(.nanoseconds(Int64(rtt * 1e9)))
            }
        }
    }

    func sendReports(now: Instant) {
        // Into storage kept for them (transport thread only): no array per report.
        reportBlocks.removeAll(keepingCapacity: true)
        if let v = videoReceiver, v.remoteSSRC != nil { reportBlocks.append(v.statistics.makeReport(now: now)) }
        if audioStats != nil { reportBlocks.append(audioStats!.makeReport(now: now)) }
        rtcpOut.removeAll(keepingCapacity: true)
        if sender.senderReports(blocks: reportBlocks, into: &rtcpOut) == 0 {
            RTCPPacket.receiverReport(ssrc: sender.videoSSRC, reports: reportBlocks).serialize(into: &rtcpOut)
        }
        RTCPPacket.sourceDescription([(sender.videoSSRC, sender.cname), (sender.audioSSRC, sender.cname)]).serialize(into: &rtcpOut)
        sender.sendRTCP(rtcpOut)
    }
    /// The report blocks of the report being sent (storage kept; transport thread only).
    var reportBlocks: [ReceptionReport] = []

    func sendRTCP(_ packets: [RTCPPacket]) {
        rtcpOut.removeAll(keepingCapacity: true)
        for p in packets { p.serialize(into: &rtcpOut) }
        sender.sendRTCP(rtcpOut)
    }

    func shutdown(reason: String, notifyPeer: Bool, remote: Bool) {
        guard !closed else { return }
        closed = true
        if notifyPeer {
            sendRTCP([.bye(ssrcs: [sender.videoSSRC, sender.audioSSRC], reason: reason)])
            if let d = dtls { for out in d.close() { sendOnSelected(out) } }
        }
        agent.close()
        sender.stop()
        for r in relays { for b in r.lock.withLock({ r.client.release() }) { r.sendToServer(b) } }
        for n in mdnsNames.current { mdns?.unregister(name: n) }
        shared.withLock { $0.closeReason = reason; $0.iceState = "closed"; $0.dtlsState = "closed" }
        logger.info("peer connection closed", metadata: ["reason": "\(reason)"])
        if remote { handlers.onClosed?(reason) }
    }

    /// Why the connection closed, once it has.
    public var closeReason: String? { shared.current.closeReason }
}

extension String {
    /// 32 hex digits as 8-4-4-4-12, the shape browsers give their `.local` names.
    var uuidShaped: String {
        let c = Array(self)
        guard c.count >= 32 else { return self }
        return [String(c[0..<8]), String(c[8..<12]), String(c[12..<16]), String(c[16..<20]), String(c[20..<32])].joined(separator: "-")
    }
}
