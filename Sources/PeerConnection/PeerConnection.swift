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
/// The driver of one ``CallCore``: it owns what the core does not, namely the sockets
/// (host UDP sockets, TURN allocations and their TCP/TLS links), candidate gathering,
/// mDNS, the clock and the transport thread. Each turn of its poll loop feeds the core
/// what arrived and what is due, and puts the core's ``DatagramOutbox`` on the wire (a
/// burst to one address with one `sendmmsg`).
///
/// Threading: the transport thread alone touches the core; calls from other threads are
/// queued to it. Media threads hand frames over through ``sendVideo(_:isKeyframe:width:height:captureTime:captureNTP:)``
/// and ``sendAudio(_:samples:)``: a short lock around a bounded queue, no packetizing,
/// SRTP or `sendto` (the transport thread protects and sends).
public final class PeerConnection: @unchecked Sendable {
    public let controlling: Bool
    let logger: Logger
    /// Host sockets; replaced on the transport thread by an ICE restart.
    var sockets: [UDPSocket]
    let bindAddresses: [TransportAddress]?
    let includeLoopback: Bool
    let hideAddressesWithMDNS: Bool
    let mdns: MDNSService?
    let mdnsNames: Locked<[String]>

    // Transport-thread state.
    var core: CallCore
    var gatherer = CandidateGatherer()
    let stunServers: [TransportAddress]
    let turnServers: [TURNServer]
    /// How each ICE local candidate (by index) sends: host socket or relay.
    var paths: [CandidatePath] = []
    var relays: [RelayAllocation] = []
    var receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
    /// A burst to one address, sent with one system call.
    let batch = DatagramBatch()
    var shutDown = false

    // Shared state: the core's, readable from any thread without touching the core.
    let sender: MediaSender
    let shared: Locked<CallStatus>
    let refusals: RefusalLog
    let commands = Locked<[(PeerConnection) -> Void]>([])
    let handlers: PeerConnectionHandlers
    /// Updated by every turn of the transport loop; a stale value means it is stuck.
    public let heartbeat = Locked(Instant.now())
    /// A pipe that wakes the transport thread when commands are queued.
    let wakeRead: Int32
    let wakeWrite: Int32
    var thread: pthread_t?

    /// Remote candidates taken from one description (offer, answer) or one trickle batch.
    public static let maxRemoteCandidatesPerDescription = CallCore.maxRemoteCandidatesPerDescription
    /// Remote candidates taken over the connection's life (per ICE generation).
    public static let maxRemoteCandidatesPerConnection = CallCore.maxRemoteCandidatesPerConnection

    /// Binds one socket per local address and gathers host candidates.
    public init(configuration: PeerConnectionConfiguration, controlling: Bool, handlers: PeerConnectionHandlers) throws {
        self.controlling = controlling
        self.logger = configuration.logger
        self.handlers = handlers
        let now = Instant.now()
        var core = CallCore(controlling: controlling, dtls: configuration.dtls, maxVideoBitrateKbps: configuration.maxVideoBitrateKbps,
                            handlers: handlers, logger: configuration.logger, now: now)
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
        let (hosts, names) = PeerConnection.hostCandidates(sockets: sockets, mdns: configuration.hideAddressesWithMDNS ? configuration.mdns : nil)
        for h in hosts { core.addLocalCandidate(h.candidate, base: h.base, now: now) }
        self.hostICE = Locked(core.localICE)
        self.sender = core.sender
        self.shared = core.shared
        self.refusals = core.refusals
        self.core = core
        self.paths = sockets.indices.map { CandidatePath.socket($0) }
        self.stunServers = configuration.stunServers
        self.turnServers = configuration.turnServers
        self.mdns = configuration.mdns
        self.mdnsNames = Locked(names)
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw SocketError("pipe") }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
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
            let names = pc.core.setRemote(s, now: Instant.now())
            pc.resolve(names)
            pc.flushOutbox()
        }
    }

    /// Adds a trickled remote candidate (`a=candidate` value).
    public func addRemoteCandidate(_ sdp: String) {
        addRemoteCandidates([sdp])
    }

    /// Adds the trickled candidates of one signalling message (a PATCH body): at most
    /// ``maxRemoteCandidatesPerDescription`` of them are taken.
    public func addRemoteCandidates(_ sdps: [String]) {
        perform { pc in
            let names = pc.core.addRemoteCandidates(sdps, origin: "trickle", now: Instant.now())
            pc.resolve(names)
            pc.flushOutbox()
        }
    }

    /// Resolves `.local` candidates with mDNS and hands the answers to the core.
    func resolve(_ names: [ICECandidate]) {
        for c in names {
            guard let mdns else {
                // Without mDNS the peer-reflexive candidate from its first check still works.
                logger.debug("no mDNS: .local candidate left to peer-reflexive discovery", metadata: ["host": "\(c.host)"])
                continue
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
                    pc.core.addResolvedCandidate(resolved, now: Instant.now())
                    pc.flushOutbox()
                }
            }
        }
    }

    /// Ends the connection: RTCP BYE and DTLS close_notify tell the peer at once.
    public func close(reason: String = "hangup") {
        perform(essential: true) { pc in
            pc.core.close(reason: reason)
            pc.flushOutbox()
        }
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

    /// Hands one encoded video frame to the transport thread, which paces it out (no-op
    /// until SRTP keys exist). Returns at once: no packetizing, SRTP or `sendto` here.
    public func sendVideo(_ data: [UInt8], isKeyframe: Bool, width: Int, height: Int, captureTime: Instant, captureNTP: UInt64) {
        let frame = MediaSender.VideoFrame(data: data, isKeyframe: isKeyframe, width: width, height: height, captureTime: captureTime, captureNTP: captureNTP)
        guard sender.queueVideo(frame) else { return }
        wake()
        // Under the status lock: more than one media thread may call this (the encoder's,
        // and whoever sends a pending keyframe). Once a frame, uncontended.
        let now = Instant.now()
        shared.withLock { if $0.timeline.firstVideoFrameQueued == nil { $0.timeline.firstVideoFrameQueued = now } }
    }

    /// Asks the peer for a keyframe (the decoder lost a reference or saw an error): a PLI,
    /// sent from the transport thread. The caller rate-limits.
    public func requestKeyframe() {
        perform { pc in
            pc.core.requestKeyframe(now: Instant.now())
            pc.flushOutbox()
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
        while !core.closed {
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
            if core.closed { break }
            let later = Instant.now()
            runTimers(now: later)
            core.handleTimeout(now: later)
            flushOutbox()
        }
        flushOutbox()
        releaseResources()
    }

    /// Puts the core's datagrams on the wire: runs to one address from one socket go with
    /// one `sendmmsg`; relayed ones through their TURN allocation.
    func flushOutbox() {
        var batchSocket: UDPSocket?
        var batchTo: TransportAddress?
        core.outbox.drain { bytes, to, path in
            guard path < paths.count else { return }
            switch paths[path] {
            case .socket(let i):
                let s = sockets[i]
                if batchSocket !== s || batchTo != to || !batch.append(bytes) {
                    if let bs = batchSocket, let bt = batchTo { batch.send(from: bs, to: bt) }
                    batchSocket = s
                    batchTo = to
                    if !batch.append(bytes) { s.send(bytes, to: to) }
                }
            case .relay(let r):
                r.send(bytes, to: to)
            }
        }
        if let bs = batchSocket, let bt = batchTo { batch.send(from: bs, to: bt) }
        let dropped = core.outbox.dropped
        if dropped != outboxDropped {
            shared.withLock { $0.outboxDropped = dropped }
            refusals.refused("outgoing datagram", source: "local", reason: "\(dropped - outboxDropped) dropped: the outbox held \(DatagramOutbox.capacity + DatagramOutbox.spillCapacity) already", now: Instant.now())
            outboxDropped = dropped
        }
    }
    var outboxDropped = 0

    /// After the core closed: TURN allocations released, mDNS names withdrawn.
    func releaseResources() {
        guard !shutDown else { return }
        shutDown = true
        for r in relays { for b in r.lock.withLock({ r.client.release() }) { r.sendToServer(b) } }
        for n in mdnsNames.current { mdns?.unregister(name: n) }
    }

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

    /// The core, borrowed in place (exclusive access, so no copy of it is made).
    @inline(__always)
    func withCore<R>(_ body: (inout CallCore) -> R) -> R { body(&core) }

    func nextDeadline(now: Instant) -> Instant? {
        // Through `inout`: a plain read of the class's stored struct copied the whole core
        // (hundreds of retains) on every turn of the loop.
        var d = withCore { $0.nextDeadline(now: now) }
        func consider(_ x: Instant?) { if let x { d = d.map { min($0, x) } ?? x } }
        consider(gatherer.nextDeadline)
        for r in relays { consider(r.lock.withLock { r.client.nextDeadline }) }
        return d
    }

    /// The driver's own timers: gathering and TURN allocations.
    func runTimers(now: Instant) {
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
    }

    /// A host candidate per socket (an mDNS name instead of the address when asked), and
    /// the names registered.
    static func hostCandidates(sockets: [UDPSocket], mdns: MDNSService?) -> ([(candidate: ICECandidate, base: TransportAddress)], [String]) {
        var names: [String] = []
        var hosts: [(candidate: ICECandidate, base: TransportAddress)] = []
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
            hosts.append((c, s.localAddress))
        }
        return (hosts, names)
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
            pc.flushOutbox()
            done.signal()
        }
        _ = done.wait(timeout: .seconds(2))
        return localICE
    }

    /// The peer's new credentials after a restart (ours or its own).
    public func setRemoteCredentials(ufrag: String, pwd: String) {
        perform { pc in pc.core.setRemoteCredentials(ufrag: ufrag, pwd: pwd, now: Instant.now()) }
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
        // Where the selected pair's socket is now, so media keeps going until a new pair.
        let oldPath = core.agent.selectedPair?.0
        var keptPath: Int? = nil
        if let p = oldPath, p < paths.count, case .socket(let i) = paths[p] {
            keptPath = fresh.firstIndex { $0 === sockets[i] }
        }
        for r in relays { for b in r.lock.withLock({ r.client.release() }) { r.sendToServer(b) } }
        relays = []
        for n in mdnsNames.current { mdns?.unregister(name: n) }
        sockets = fresh
        let (hosts, names) = PeerConnection.hostCandidates(sockets: sockets, mdns: hideAddressesWithMDNS ? mdns : nil)
        mdnsNames.withLock { $0 = names }
        core.restartICE(hosts: hosts, destinationPath: keptPath, now: now)
        paths = sockets.indices.map { CandidatePath.socket($0) }
        gatherer = CandidateGatherer()
        hostICE.withLock { $0 = core.localICE }
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

    /// A datagram on host socket `i`: from a TURN server we use, an answer to our
    /// gathering, or for the core.
    func receivedOnSocket(_ i: Int, length: Int, from: TransportAddress) {
        let first = receiveBuffer[0]
        // The STUN server may be the TURN server too: binding answers go to the gatherer.
        let isGatherer = first < 4 && length >= 20 && gatherer.owns(Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[8..<20])))
        if isGatherer {
            guard let m = try? STUNMessage(parsing: Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length]))) else { return }
            let (matched, candidate) = gatherer.handle(m, from: from, base: sockets[i].localAddress)
            if matched, let c = candidate {
                logger.info("gathered server-reflexive candidate", metadata: ["candidate": "\(c)"])
                shared.withLock { $0.gathered.append(c) }
                handlers.onGatheringChange?()
            }
            finishGatheringIfDone()
            return
        }
        if let r = relays.first(where: { $0.socketIndex == i && $0.server.address == from }) {
            handleFromServer(r, Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<length])))
            return
        }
        core.receive(UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<length]), from: from, localCandidate: i, now: Instant.now())
    }

    /// A frame from a TURN server: ChannelData or a Data indication carry a peer's
    /// datagram; anything else is for the TURN client.
    func handleFromServer(_ r: RelayAllocation, _ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        if TURNClient.isChannelData(first) {
            let unwrapped = r.lock.withLock { bytes.withUnsafeBytes { r.client.unwrapChannelData($0) } }
            guard let (peer, range) = unwrapped, let index = r.candidateIndex, range.count <= receiveBuffer.count else { countMalformed("ChannelData", r.server.address); return }
            bytes[range].withUnsafeBytes { receiveBuffer.copyMemory(from: $0) }
            core.receive(UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<range.count]), from: peer, localCandidate: index, now: Instant.now())
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
            core.receive(UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<payload.count]), from: peer, localCandidate: index, now: Instant.now())
            return
        }
        checkRelay(r)
    }

    /// A malformed frame from a TURN server (the core counts the peer's).
    func countMalformed(_ kind: String, _ from: TransportAddress) {
        shared.withLock { $0.malformed += 1 }
        refusals.refused("datagram", source: "\(from)", reason: "malformed \(kind)", now: Instant.now())
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
            // The path first: adding the candidate may send checks from it at once.
            paths.append(.relay(r))
            let index = core.addLocalCandidate(c, base: relayed, now: Instant.now())
            r.candidateIndex = index
            logger.info("gathered relayed candidate", metadata: ["candidate": "\(c.sdpValue)", "server": "\(r.server.address)"])
            shared.withLock { $0.gathered.append(c.sdpValue) }
            handlers.onGatheringChange?()
            flushOutbox()
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
